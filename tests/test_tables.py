"""ELG/PLG class-text tables: contents, caching, and the PLG pseudo-labels against a by-hand computation."""

import numpy as np
import pytest
import torch

from langdml_core.config import LanguageConfig
from langdml_core.errors import WeightsError
from langdml_core.language import tables
from langdml_core.language.tables import MODEL_LOADS, build_table, imagenet_class_scores, imagenet_names


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGDML_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def small_train(demo_dataset):
    return demo_dataset.train.subset_classes([0, 5, 9], "train")


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A small random timm ImageNet classifier saved as a local weights file, as a user would have one."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=1000)
    path = tmp_path_factory.mktemp("weights") / "test_efficientnet.safetensors"
    save_file(model.state_dict(), str(path))
    return str(path)


def test_imagenet_names_are_first_wordnet_synonyms():
    names = imagenet_names()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby"
    assert all("," not in n for n in names)


@pytest.mark.parametrize("average", ["logits", "softmax"])
def test_plg_scores_are_class_averages_of_the_classifier_on_its_own_preprocessing(
    cache, small_train, tiny_classifier, average
):
    import timm
    import timm.data

    scores = imagenet_class_scores(
        small_train, "test_efficientnet", tiny_classifier, average, torch.device("cpu")
    )
    model = timm.create_model(
        "test_efficientnet",
        pretrained=True,
        num_classes=1000,
        pretrained_cfg_overlay=dict(file=tiny_classifier),
    ).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    assert transform.transforms[0].size != 64  # the classifier's preprocessing, not the 64 px DML one
    for c in range(small_train.num_classes):
        outs = []
        for i in np.flatnonzero(small_train.labels == c):
            with torch.no_grad():
                out = model(transform(small_train.load(int(i)))[None]).double()[0]
            outs.append(out.softmax(0) if average == "softmax" else out)
        np.testing.assert_allclose(scores[c], torch.stack(outs).mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_plg_table_is_rank_aligned_and_cached(cache, small_train, tiny_classifier):
    cfg = LanguageConfig(
        guidance="plg", topk=3, plg_classifier="test_efficientnet", plg_weights_file=tiny_classifier
    )
    before = dict(MODEL_LOADS)
    result = build_table(cfg, small_train, seed=0, device=torch.device("cpu"))
    assert result.table.shape == (3, 3, 384)
    assert (MODEL_LOADS["classifier"], MODEL_LOADS["encoder"]) == (
        before["classifier"] + 1,
        before["encoder"] + 1,
    )
    scores = imagenet_class_scores(
        small_train, "test_efficientnet", tiny_classifier, "logits", torch.device("cpu")
    )
    names = imagenet_names()
    from langdml_core.language.encoders import build_encoder

    encoder = build_encoder("minilm")
    for c in range(3):
        top = np.argsort(-scores[c], kind="stable")[:3]
        assert result.texts[c] == [f"a photo of a {names[i]}" for i in top]
        expected = encoder.encode(result.texts[c])
        np.testing.assert_allclose(result.table[c].numpy(), expected, atol=1e-5)
    rows = result.pseudo_labels
    assert len(rows) == 9 and rows[0]["rank"] == 1 and rows[0]["class_text"] == small_train.class_texts[0]
    # A second trial with the same key loads neither model.
    again = build_table(cfg, small_train, seed=1, device=torch.device("cpu"))
    assert torch.equal(again.table, result.table)
    assert (MODEL_LOADS["classifier"], MODEL_LOADS["encoder"]) == (
        before["classifier"] + 1,
        before["encoder"] + 1,
    )


def test_elg_table_prompt_shuffle_and_cache(cache, small_train):
    before = MODEL_LOADS["encoder"]
    cfg = LanguageConfig(guidance="elg")
    result = build_table(cfg, small_train, seed=0, device=torch.device("cpu"))
    assert result.table.shape == (3, 1, 384)
    assert result.texts == [[f"a photo of a {t}"] for t in small_train.class_texts]
    assert MODEL_LOADS["encoder"] == before + 1
    build_table(cfg, small_train, seed=0, device=torch.device("cpu"))
    assert MODEL_LOADS["encoder"] == before + 1  # cache hit: the encoder was not loaded
    prompt = build_table(
        LanguageConfig(guidance="elg", prompt="{}"), small_train, seed=0, device=torch.device("cpu")
    )
    assert prompt.texts == [[t] for t in small_train.class_texts]


def test_shuffled_texts_are_a_permutation_that_moves_most_classes(cache, demo_dataset):
    train = demo_dataset.train
    plain = build_table(LanguageConfig(guidance="elg"), train, seed=0, device=torch.device("cpu"))
    shuffled = build_table(
        LanguageConfig(guidance="elg", shuffle_texts=True), train, seed=0, device=torch.device("cpu")
    )
    assert sorted(shuffled.texts) == sorted(plain.texts)
    assert sum(a != b for a, b in zip(shuffled.texts, plain.texts, strict=True)) > 40  # of 48 classes
    index = {t[0]: i for i, t in enumerate(plain.texts)}
    for c, texts in enumerate(shuffled.texts):  # rows follow their (moved) texts
        torch.testing.assert_close(shuffled.table[c], plain.table[index[texts[0]]])


def test_language_cache_follows_the_weights_loaded_from_the_hub_cache(cache, tmp_path, monkeypatch):
    """No encoder_path: the encoder's weights come from the Hugging Face cache, and the language cache is keyed
    by a digest of those files; weights replaced under the same Hub id are encoded afresh, never served the
    old model's embeddings (they were keyed 'bert-base:default' before)."""
    import tiny_models

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    snapshot = tiny_models.hub_snapshot(hub, "bert-base-uncased")
    torch.manual_seed(0)
    tiny_models.save_bert(snapshot)
    cpu, loads = torch.device("cpu"), MODEL_LOADS["encoder"]
    first = tables.encode_cached(tiny_models.TEXTS, "bert-base", "", "auto", cpu)
    np.testing.assert_array_equal(
        tables.encode_cached(tiny_models.TEXTS, "bert-base", "", "auto", cpu), first
    )
    assert MODEL_LOADS["encoder"] == loads + 1  # the second call read the cache
    torch.manual_seed(1)
    tiny_models.save_bert(snapshot)  # other weights under the same Hub id
    changed = tables.encode_cached(tiny_models.TEXTS, "bert-base", "", "auto", cpu)
    assert MODEL_LOADS["encoder"] == loads + 2 and not np.allclose(changed, first)


def test_files_digest_sees_changes_at_either_end_and_inside_big_files(tmp_path):
    from langdml_core.cache import files_digest

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=10 << 20, dtype=np.uint8).tobytes()  # 10 MiB: sampled, not read whole
    file = tmp_path / "w.bin"
    file.write_bytes(data)
    first = files_digest(file)
    for offset in (0, len(data) - 1, (1 << 20) + 10):  # head, tail, inside the first sampled block
        file.write_bytes(data[:offset] + bytes([data[offset] ^ 1]) + data[offset + 1 :])
        assert files_digest(file) != first, offset
    mid = 3 << 19  # 1.5 MiB into a 3 MiB file, which is read whole
    file.write_bytes(data[: 3 << 20])
    small = files_digest(file)
    file.write_bytes(data[:mid] + bytes([data[mid] ^ 1]) + data[mid + 1 : 3 << 20])
    assert files_digest(file) != small


def test_plg_classifier_fingerprint_is_a_digest_of_the_file_it_loads(tmp_path, monkeypatch):
    """A local weights file, or timm's file in the Hugging Face cache: the fingerprint is its digest."""
    import tiny_models

    from langdml_core.cache import files_digest

    local = tiny_models.save_timm_random("test_efficientnet", tmp_path / "w.safetensors")
    assert tables.classifier_fingerprint("test_efficientnet", str(local)) == files_digest(
        local, "test_efficientnet"
    )
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    with pytest.raises(WeightsError, match="No local ImageNet weights for backbone 'test_efficientnet'"):
        tables.classifier_fingerprint("test_efficientnet", "")
    cached = tiny_models.hub_snapshot(hub, "timm/test_efficientnet.r160_in1k") / "model.safetensors"
    cached.write_bytes(local.read_bytes())
    first = tables.classifier_fingerprint("test_efficientnet", "")
    assert first == files_digest(cached, "test_efficientnet")
    cached.write_bytes(local.read_bytes()[:-8] + b"\0" * 8)  # other weights under the same Hub id
    assert tables.classifier_fingerprint("test_efficientnet", "") != first


# ---- PLG preprocessing: language.plg_transform ---------------------------------------------------------


def test_plg_transform_choices_match_the_registry():
    from langdml_core.config import CHOICES

    assert tuple(tables.PLG_TRANSFORMS) == CHOICES["language.plg_transform"]


def test_release_plg_transform_pads_the_short_side_black():
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 256, size=(300, 200, 3), dtype=np.uint8)  # 200 wide, 300 high; no black
    out = tables.release_transform()(Image.fromarray(pixels))
    assert out.shape == (3, 299, 299)
    # Resize(256): 256 x 384; CenterCrop(299) crops the height and pads the width by 43 (21 left, 22 right)
    mean, std = torch.tensor(tables.IMAGENET_MEAN), torch.tensor(tables.IMAGENET_STD)
    black = ((0 - mean) / std)[:, None, None]
    for border in (out[:, :, :21], out[:, :, -22:]):
        assert torch.equal(border, black.expand_as(border))
    centre = out[:, :, 21:-22]
    assert not (centre == black).all(dim=0).any()  # every centre pixel differs from the padding somewhere
    assert (tables.IMAGENET_MEAN, tables.IMAGENET_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_plg_transform_is_part_of_the_cache_key_and_changes_the_scores(cache, small_train, tiny_classifier):
    def scores(transform):
        return imagenet_class_scores(
            small_train,
            "test_efficientnet",
            tiny_classifier,
            "logits",
            torch.device("cpu"),
            transform=transform,
        )

    before = MODEL_LOADS["classifier"]
    classifier, release = scores("classifier"), scores("release")
    assert MODEL_LOADS["classifier"] == before + 2  # a different key: computed, not read from the cache
    assert not np.allclose(classifier, release)
    np.testing.assert_array_equal(scores("release"), release)
    assert MODEL_LOADS["classifier"] == before + 2  # now both are cached
    with pytest.raises(ValueError, match="Unknown PLG transform 'relase'"):
        scores("relase")


def test_build_table_passes_the_configured_plg_transform(monkeypatch, small_train):
    seen = {}

    def fake_scores(train, classifier, weights_file, average, device, **kwargs):
        seen.update(kwargs)
        return np.tile(np.arange(1000.0), (train.num_classes, 1))

    monkeypatch.setattr(tables, "imagenet_class_scores", fake_scores)
    monkeypatch.setattr(tables, "encode_cached", lambda texts, *a: np.ones((len(texts), 4), np.float32))
    cfg = LanguageConfig(guidance="plg", topk=2, plg_transform="release")
    build_table(cfg, small_train, seed=0, device=torch.device("cpu"))
    assert seen == {"transform": "release"}


def test_the_tests_use_their_own_cache_whatever_the_user_exported():
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    shown = subprocess.run(
        [sys.executable, "-c", "import os, conftest; print(os.environ['LANGDML_CACHE'])"],
        env={**os.environ, "LANGDML_CACHE": "/home/user/.cache/langdml"},
        cwd=tests,
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == str(tests.parent / ".pytest_cache" / "langdml-cache"), shown.stderr
