import numpy as np
import pytest
from scipy.stats import spearmanr

from langdml_core.data import demo
from langdml_core.data.base import DATASETS


def test_counts_disjoint_classes_and_unseen_compositions(demo_dataset):
    train, test = demo_dataset.train, demo_dataset.test
    assert (train.num_classes, test.num_classes, len(train), len(test)) == (48, 48, 48 * 24, 48 * 24)
    assert not set(train.class_texts) & set(test.class_texts)
    train_words = [set(t.split()) for t in train.class_texts]
    for text in test.class_texts:
        colour, pattern, shape = text.split()
        # every attribute value, and every pair of values, of a test class was seen in training
        for pair in ({colour, pattern}, {colour, shape}, {pattern, shape}):
            assert any(pair <= words for words in train_words), (text, pair)
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (64, 64, 3)


def test_generation_is_deterministic():
    a = demo.generate(images_per_class=1, seed=0)
    b = demo.generate(images_per_class=1, seed=0)
    c = demo.generate(images_per_class=1, seed=1)
    assert np.array_equal(a["images"], b["images"])
    assert not np.array_equal(a["images"], c["images"])


def test_registered_and_count_check_runs():
    dataset = DATASETS.create("demo", "", layout="auto", check_counts=True)
    assert dataset.default_image_size == 64


@pytest.mark.slow
def test_name_similarity_correlates_with_visual_similarity(demo_dataset):
    """Language relations must mean something visually: MiniLM similarity of the class names vs the
    similarity of class-mean colour/texture statistics, over all pairs of test classes."""
    from langdml_core.language.encoders import ENCODERS

    test = demo_dataset.test
    names = test.class_texts
    text = ENCODERS.create("minilm").encode(names)
    text_sim = text @ text.T

    # A simple, model-free visual descriptor: per-image RGB histogram of the central region plus
    # gradient-orientation energy (texture), averaged per class.
    images = test.images.astype(np.float32) / 255
    centre = images[:, 16:48, 16:48]
    hist = np.stack([np.histogramdd(c.reshape(-1, 3), bins=4, range=[(0, 1)] * 3)[0].ravel() for c in centre])
    gy, gx = np.gradient(centre.mean(-1), axis=(1, 2))
    texture = np.stack([np.abs(gx).mean((1, 2)), np.abs(gy).mean((1, 2)), (gx * gy).mean((1, 2))], 1)
    feats = np.concatenate([hist / hist.sum(1, keepdims=True), texture * 10], 1)
    means = np.stack([feats[test.labels == c].mean(0) for c in range(test.num_classes)])
    means = (means - means.mean(0)) / (means.std(0) + 1e-8)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    visual_sim = means @ means.T
    upper = np.triu_indices(len(names), 1)
    rho = spearmanr(text_sim[upper], visual_sim[upper]).statistic
    print(f"spearman(name similarity, visual similarity) over {len(upper[0])} class pairs = {rho:.3f}")
    assert rho > 0.2
