import numpy as np
import pytest
from scipy.stats import spearmanr

from langdml_core.data import demo
from langdml_core.data.base import DATASETS


def test_counts_disjoint_classes_and_unseen_compositions(demo_dataset):
    train, test = demo_dataset.train, demo_dataset.test
    assert (train.num_classes, test.num_classes, len(train), len(test)) == (48, 48, 48 * 48, 48 * 96)
    assert not set(train.class_texts) & set(test.class_texts)
    train_words = [set(t.split()) for t in train.class_texts]
    for text in test.class_texts:
        colour, pattern, shape = text.split()
        # every attribute value, and every pair of values, of a test class was seen in training
        for pair in ({colour, pattern}, {colour, shape}, {pattern, shape}):
            assert any(pair <= words for words in train_words), (text, pair)
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (64, 64, 3)


def test_generation_is_deterministic():
    a = demo.generate(images_per_class=1, test_images_per_class=1, seed=0)
    b = demo.generate(images_per_class=1, test_images_per_class=1, seed=0)
    c = demo.generate(images_per_class=1, test_images_per_class=1, seed=1)
    assert np.array_equal(a["images"], b["images"])
    assert not np.array_equal(a["images"], c["images"])


def test_more_test_images_leave_the_training_images_and_the_first_test_images_unchanged():
    small = demo.generate(images_per_class=2, test_images_per_class=2, seed=0)
    large = demo.generate(images_per_class=2, test_images_per_class=4, seed=0)
    n = len(small["labels"])  # 96 classes x 2: the block every class gets
    assert np.array_equal(large["images"][:n], small["images"]) and np.array_equal(
        large["labels"][:n], small["labels"]
    )
    extra = large["labels"][n:]  # two more images of each test class, and of no training class
    classes = demo.class_table()
    test_ids = [c for c, triple in enumerate(classes) if not demo.is_train_class(*triple)]
    assert extra.tolist() == [c for c in test_ids for _ in range(2)]
    assert len({large["images"][i].tobytes() for i in range(len(large["labels"]))}) == len(large["labels"])


def test_more_training_images_leave_the_first_images_and_the_test_images_unchanged():
    """Training classes' extra images come after every other image, on streams of their own, so the 24
    training images of generator version 2 and every test image are the same images in the same order."""
    small = demo.generate(images_per_class=2, test_images_per_class=3, seed=0)
    large = demo.generate(images_per_class=2, test_images_per_class=3, seed=0, train_images_per_class=4)
    n = len(small["labels"])
    assert np.array_equal(large["images"][:n], small["images"]) and np.array_equal(
        large["labels"][:n], small["labels"]
    )
    classes = demo.class_table()
    train_ids = [c for c, triple in enumerate(classes) if demo.is_train_class(*triple)]
    assert large["labels"][n:].tolist() == [c for c in train_ids for _ in range(2)]
    assert len({image.tobytes() for image in large["images"]}) == len(large["labels"])


def test_a_shortened_training_split_is_the_first_images_of_each_class(demo_dataset):
    from langdml_core.config import DataConfig
    from langdml_core.data import build_dataset

    short = build_dataset(DataConfig(name="demo", train_images_per_class=24)).train
    full = demo_dataset.train
    assert len(short) == 48 * 24 and short.class_texts == full.class_texts
    first = np.sort(np.concatenate([np.flatnonzero(full.labels == c)[:24] for c in range(48)]))
    assert np.array_equal(short.images, full.images[first]) and np.array_equal(
        short.labels, full.labels[first]
    )
    # the training images of the demo until 2026-12-07 (24 per class, generated without the extras)
    old = demo.generate(images_per_class=24, test_images_per_class=24, seed=0)
    classes = demo.class_table()
    train_ids = [c for c, triple in enumerate(classes) if demo.is_train_class(*triple)]
    assert np.array_equal(short.images, old["images"][np.isin(old["labels"], train_ids)])
    # with a validation split, the cap shortens the remaining training classes only
    capped = build_dataset(DataConfig(name="demo", val_classes=12, train_images_per_class=24))
    whole = build_dataset(DataConfig(name="demo", val_classes=12))
    assert np.array_equal(capped.val.images, whole.val.images) and len(capped.val) == 12 * 48
    assert len(capped.train) == 36 * 24 and capped.train.class_texts == whole.train.class_texts


def test_validation_folds_partition_the_training_classes(demo_dataset):
    """data.val_fold=k holds out the k-th block of data.val_classes classes of one fixed permutation: folds
    0..3 of 12 are disjoint and cover all 48 training classes (class-disjoint cross-validation); fold 0 is the
    validation split as it was before folds existed; a fold past the last is refused in one sentence."""
    from langdml_core.config import DataConfig, TrialConfig
    from langdml_core.data import DatasetError, build_dataset
    from langdml_core.errors import ConfigError

    texts = demo_dataset.train.class_texts
    folds = [build_dataset(DataConfig(name="demo", val_classes=12, val_fold=k)) for k in range(4)]
    held = [set(f.val.class_texts) for f in folds]
    assert all(len(h) == 12 for h in held) and set().union(*held) == set(texts)
    assert all(not (held[i] & held[j]) for i in range(4) for j in range(i + 1, 4))
    for fold, h in zip(folds, held, strict=True):
        assert set(fold.train.class_texts) == set(texts) - h and len(fold.val) == 12 * 48
    before = sorted(np.random.default_rng(12345).permutation(48)[:12])  # the carve's fixed choice
    assert held[0] == {texts[c] for c in before}
    with pytest.raises(DatasetError, match=r"data.val_fold=4 must lie in 0..3: 48 training classes hold 4"):
        build_dataset(DataConfig(name="demo", val_classes=12, val_fold=4))
    with pytest.raises(ConfigError, match=r"data.val_fold=1 needs a validation split"):
        TrialConfig.from_dict({"data.val_fold": 1})


def test_registered_and_count_check_runs():
    dataset = DATASETS.create("demo", "", layout="auto", check_counts=True)
    assert dataset.default_image_size == 64


@pytest.mark.slow
def test_name_similarity_correlates_with_visual_similarity(demo_dataset):
    """Language relations must mean something visually. Over all pairs of test classes, compare MiniLM
    cosine similarity of the class names with the cosine similarity of class-mean ImageNet features
    (the packaged EfficientNet-Lite0, before any DML training)."""
    import torch

    from langdml_core.backbones import create_backbone
    from langdml_core.data import eval_loader
    from langdml_core.data.transforms import eval_transform
    from langdml_core.evaluate import embed
    from langdml_core.language.encoders import ENCODERS

    test = demo_dataset.test
    text = ENCODERS.create("minilm").encode(test.class_texts)
    text_sim = text @ text.T

    backbone = create_backbone("tf_efficientnet_lite0", pretrained=True)
    cfg = backbone.pretrained_cfg
    loader = eval_loader(test, eval_transform(64, cfg["mean"], cfg["std"], "bicubic"), batch_size=256)
    feats, labels = embed(backbone, loader, torch.device("cpu"))
    means = np.stack([feats[labels == c].mean(0).numpy() for c in range(test.num_classes)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    visual_sim = means @ means.T

    upper = np.triu_indices(test.num_classes, 1)
    rho = spearmanr(text_sim[upper], visual_sim[upper]).statistic
    print(f"spearman(name similarity, visual similarity) over {len(upper[0])} class pairs = {rho:.3f}")
    assert rho > 0.2


def test_a_shortened_test_split_keeps_the_first_images_of_each_class(demo_dataset):
    from langdml_core.config import DataConfig
    from langdml_core.data import build_dataset

    short = build_dataset(DataConfig(name="demo", test_images_per_class=24)).test
    full = demo_dataset.test
    assert len(short) == 48 * 24 and short.class_texts == full.class_texts
    first = np.concatenate([np.flatnonzero(full.labels == c)[:24] for c in range(48)])
    order = np.argsort(first, kind="stable")  # the split's own order
    assert np.array_equal(short.labels, full.labels[first[order]])
    assert np.array_equal(short.images, full.images[first[order]])
    assert len(build_dataset(DataConfig(name="demo", test_images_per_class=500)).test) == len(full)
