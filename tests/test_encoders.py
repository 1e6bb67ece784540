"""Text encoders: every loader's real path, fed with tiny randomly initialised models saved as a user would.

Nothing here downloads: sockets are blocked where a loader could reach the hub, and the HF cache is a
tmp directory laid out like the real one.
"""

import json
import logging
import socket
import warnings

import numpy as np
import pytest
import tiny_models
import torch
from tiny_models import TEXTS, WORDS

from langdml_core.errors import ConfigError, WeightsError
from langdml_core.language import encoders
from langdml_core.language.encoders import ENCODERS, build_encoder, register_clip_arch

TINY_ARCH = "langdml-test-tiny-clip"
TINY_CLIP = "clip-test-tiny"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def unit_rows(x: np.ndarray) -> None:
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def unit(v: torch.Tensor | np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ---- tiny models on disk -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    out = {
        "bert": tiny_models.save_bert(root / "bert"),
        "roberta": tiny_models.save_roberta(root / "roberta"),
        "gpt2": tiny_models.save_gpt2(root / "gpt2"),
    }

    # open_clip: a tiny custom architecture (real SimpleTokenizer vocab), as .safetensors and TorchScript .pt.
    import open_clip
    from safetensors.torch import save_file

    (root / f"{TINY_ARCH}.json").write_text(json.dumps(tiny_models.TINY_CLIP_CFG))
    open_clip.add_model_config(root / f"{TINY_ARCH}.json")
    register_clip_arch(TINY_CLIP, TINY_ARCH)
    clip = open_clip.create_model(TINY_ARCH, pretrained=None)
    out["clip_state"] = {k: v.clone() for k, v in clip.state_dict().items()}
    out["clip"] = root / "tiny_clip.safetensors"
    save_file(clip.state_dict(), str(out["clip"]))
    out["clip_dir"] = tiny_models.save_clip_dir(root / "clip_hub_layout", clip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # OpenAI's archives keep the causal mask as a plain tensor attribute, not a buffer.
        mask = clip._buffers.pop("attn_mask")
        clip.attn_mask = mask
        out["clip_jit"] = root / "tiny_clip_jit.pt"
        torch.jit.script(clip).save(str(out["clip_jit"]))

    # word vectors: GloVe (no header, one multi-word entry) and fastText (header, cased duplicates).
    rng = np.random.default_rng(0)
    out["vectors"] = {w: rng.normal(size=4) for w in WORDS}
    lines = [f"{w} " + " ".join(f"{x:.6f}" for x in v) for w, v in out["vectors"].items()]
    out["glove"] = root / "glove.txt"
    out["glove"].write_text("\n".join([". . . 1 1 1 1", *lines]) + "\n")
    out["fasttext"] = root / "vectors.vec"
    out["fasttext"].write_text("\n".join([f"{len(lines) + 1} 4", "Red 9 9 9 9", *lines]) + "\n")
    return out


# ---- minilm (real, packaged) ---------------------------------------------------------------------------
def test_minilm_packaged_geometry():
    enc = build_encoder("minilm")
    x = enc.encode(["a photo of a red circle", "a photo of a red square", "a photo of a blue car"])
    assert x.shape == (3, 384) == (3, enc.dim) and enc.pooling == "mean" and enc.name == "minilm"
    unit_rows(x)
    assert x[0] @ x[1] > x[0] @ x[2]
    assert len(enc.digest) == 64
    enc.close()
    assert enc.model is None


# ---- CLIP ----------------------------------------------------------------------------------------------
def test_clip_loads_local_checkpoint(models, no_network):
    enc = build_encoder(TINY_CLIP, path=str(models["clip"]))
    assert (enc.dim, enc.pooling) == (8, "eot-projection")
    # The saved weights were loaded, not a random initialisation.
    torch.testing.assert_close(enc.model.text_projection, models["clip_state"]["text_projection"])
    x = enc.encode(TEXTS + [TEXTS[0]], batch_size=2)
    assert x.shape == (5, 8)
    unit_rows(x)
    np.testing.assert_allclose(x[0], x[4], atol=1e-6)
    np.testing.assert_array_equal(x, enc.encode(TEXTS + [TEXTS[0]]))  # deterministic, batch-size free
    import open_clip

    tokens = open_clip.get_tokenizer(TINY_ARCH)([TEXTS[1]])
    with torch.no_grad():
        direct = enc.model.encode_text(tokens)[0]
    np.testing.assert_allclose(x[1], unit(direct), atol=1e-6)


def test_clip_hub_layout_folder_uses_its_own_config(models, no_network):
    """open_clip's Hub layout (config + weights in one folder) builds the architecture its config names,
    whichever CLIP name asked for it, and the file inside the folder gives the same vectors."""
    want = build_encoder(TINY_CLIP, path=str(models["clip"])).encode(TEXTS)
    for path in (models["clip_dir"], models["clip_dir"] / "open_clip_model.safetensors"):
        enc = build_encoder("clip-ViT-B-32", path=str(path))
        assert enc.dim == 8
        np.testing.assert_allclose(enc.encode(TEXTS), want, atol=1e-6)
    (models["clip_dir"].parent / "config-only").mkdir()
    (models["clip_dir"].parent / "config-only" / "open_clip_config.json").write_text("{}")
    with pytest.raises(WeightsError, match="no open_clip_model.safetensors"):
        build_encoder("clip-ViT-B-32", path=str(models["clip_dir"].parent / "config-only"))


def test_clip_torchscript_checkpoint_matches(models):
    a = build_encoder(TINY_CLIP, path=str(models["clip"])).encode(TEXTS)
    b = build_encoder(TINY_CLIP, path=str(models["clip_jit"])).encode(TEXTS)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_clip_hub_cache_lookup(models, tmp_path, monkeypatch, no_network):
    """Without a path, the tag's file is taken from an already-populated hub cache (offline)."""
    import open_clip.pretrained

    monkeypatch.setattr(
        open_clip.pretrained, "get_pretrained_cfg", lambda arch, tag: {"hf_hub": "timm/tiny/"}
    )
    snapshot = tmp_path / "models--timm--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "models--timm--tiny" / "refs").mkdir()
    (tmp_path / "models--timm--tiny" / "refs" / "main").write_text("a" * 40)
    (snapshot / "open_clip_model.safetensors").write_bytes(models["clip"].read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    x = build_encoder(TINY_CLIP).encode(TEXTS)
    np.testing.assert_allclose(x, build_encoder(TINY_CLIP, path=str(models["clip"])).encode(TEXTS), atol=1e-6)


def test_clip_missing_weights(tmp_path, monkeypatch, no_network):
    missing = tmp_path / "ViT-B-32.safetensors"
    with pytest.raises(WeightsError, match="language.encoder_path") as err:
        build_encoder("clip-ViT-B-32", path=str(missing))
    assert str(missing) in str(err.value)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="empty-cache"):
        build_encoder("clip-ViT-L-14")
    assert encoders.CLIP_ARCHS["clip-ViT-B-32"].arch == "ViT-B-32-quickgelu"
    with pytest.raises(ConfigError, match="pooling"):
        build_encoder("clip-ViT-B-32", pooling="mean")


def test_register_clip_arch_is_idempotent(models):
    register_clip_arch(TINY_CLIP, TINY_ARCH)
    with pytest.raises(ConfigError):
        register_clip_arch(TINY_CLIP, "ViT-B-32")


# ---- transformers ------------------------------------------------------------------------------------
def test_bert_pooler_and_mean(models, no_network):
    from transformers import AutoModel, AutoTokenizer

    enc = build_encoder("bert-base", path=str(models["bert"]))
    assert (enc.dim, enc.pooling) == (16, "pooler")
    x = enc.encode(TEXTS + [TEXTS[0]], batch_size=3)
    assert x.shape == (5, 16)
    unit_rows(x)
    np.testing.assert_allclose(x[0], x[4], atol=1e-6)
    np.testing.assert_allclose(x, enc.encode(TEXTS + [TEXTS[0]]), atol=1e-6)
    tok = AutoTokenizer.from_pretrained(models["bert"], local_files_only=True)
    model = AutoModel.from_pretrained(models["bert"], local_files_only=True).eval()
    with torch.no_grad():
        out = model(**tok([TEXTS[3]], return_tensors="pt"))
    np.testing.assert_allclose(x[3], unit(out.pooler_output[0]), atol=1e-5)
    mean = build_encoder("bert-base", path=str(models["bert"]), pooling="mean")
    assert mean.pooling == "mean"
    xm = mean.encode(TEXTS)
    unit_rows(xm)
    assert not np.allclose(xm, x[:4], atol=1e-3)
    np.testing.assert_allclose(xm[3], unit(out.last_hidden_state[0].mean(0)), atol=1e-5)
    cls = build_encoder("bert-base", path=str(models["bert"]), pooling="cls").encode(TEXTS)
    np.testing.assert_allclose(cls[3], unit(out.last_hidden_state[0, 0]), atol=1e-5)


def test_roberta_records_mean(models, caplog, no_network):
    with caplog.at_level(logging.INFO, logger="langdml_core.language.encoders"):
        enc = build_encoder("roberta-large", path=str(models["roberta"]))
    assert enc.pooling == "mean" and "pooling=mean" in caplog.text
    x = enc.encode(TEXTS)
    assert x.shape == (4, 16)
    unit_rows(x)
    with pytest.raises(ConfigError, match="no trained pooler"):
        build_encoder("roberta-large", path=str(models["roberta"]), pooling="pooler")


def test_gpt2_last_non_pad_token(models, no_network):
    from transformers import AutoModel, AutoTokenizer

    enc = build_encoder("gpt2", path=str(models["gpt2"]))
    assert (enc.dim, enc.pooling) == (16, "last")
    x = enc.encode(TEXTS)  # "the dog" is padded (with eos) to the longest text
    unit_rows(x)
    tok = AutoTokenizer.from_pretrained(models["gpt2"], local_files_only=True)
    model = AutoModel.from_pretrained(models["gpt2"], local_files_only=True).eval()
    with torch.no_grad():
        single = model(**tok([TEXTS[3]], return_tensors="pt")).last_hidden_state[0]
    assert len(tok(TEXTS[3])["input_ids"]) < len(tok(TEXTS[0])["input_ids"])
    np.testing.assert_allclose(x[3], unit(single[-1]), atol=1e-5)
    mean = build_encoder("gpt2", path=str(models["gpt2"]), pooling="mean")
    np.testing.assert_allclose(mean.encode(TEXTS)[3], unit(single.mean(0)), atol=1e-5)
    for bad in ("pooler", "cls", "bogus"):
        with pytest.raises(ConfigError, match="pooling"):
            build_encoder("gpt2", path=str(models["gpt2"]), pooling=bad)


def test_hf_generic_auto_pooling(models, no_network):
    assert build_encoder("hf", path=str(models["bert"])).pooling == "pooler"
    assert build_encoder("hf", path=str(models["roberta"])).pooling == "mean"
    assert build_encoder("hf", path=str(models["gpt2"]), pooling="last").pooling == "last"
    with pytest.raises(WeightsError, match="encoder_path"):
        build_encoder("hf")


def test_hf_cache_offline(models, tmp_path, monkeypatch, no_network):
    """bert-base without a path comes from the hub cache by its hub id, never from the network."""
    repo = tmp_path / "models--bert-base-uncased"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("b" * 40)
    snapshot = repo / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    for file in models["bert"].iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    enc = build_encoder("bert-base")
    np.testing.assert_allclose(
        enc.encode(TEXTS), build_encoder("bert-base", path=str(models["bert"])).encode(TEXTS), atol=1e-6
    )
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match="'gpt2' is not in the Hugging Face cache .*empty"):
        build_encoder("gpt2")


def test_hf_missing_and_incomplete(models, tmp_path, no_network):
    missing = tmp_path / "no-such-bert"
    with pytest.raises(WeightsError) as err:
        build_encoder("bert-base", path=str(missing))
    assert str(missing) in str(err.value)
    broken = tmp_path / "bert-2-layers"
    broken.mkdir()
    for file in models["bert"].iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] = 2  # the checkpoint holds only one layer: never initialise the rest
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="lacks weights"):
        build_encoder("bert-base", path=str(broken))


# ---- word vectors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["glove", "fasttext"])
def test_word_vectors(models, name):
    enc = build_encoder(name, path=str(models[name]))
    assert (enc.dim, enc.pooling) == (4, "mean")
    texts = ["A photo of a RED circle!", "red-circle", "zebra dog", "a photo of a red circle"]
    x = enc.encode(texts)
    assert x.shape == (4, 4)
    unit_rows(x)
    v = models["vectors"]
    np.testing.assert_allclose(
        x[0], unit(np.mean([v[w] for w in ["a", "photo", "of", "a", "red", "circle"]], 0)), atol=1e-5
    )
    np.testing.assert_allclose(x[1], unit((v["red"] + v["circle"]) / 2), atol=1e-5)  # exact 'red' beats 'Red'
    np.testing.assert_allclose(x[2], unit(v["dog"]), atol=1e-5)  # OOV 'zebra' skipped
    np.testing.assert_array_equal(x[0], x[3])
    with pytest.raises(ConfigError, match="'zebra 42'"):
        enc.encode(["dog", "zebra 42"])
    with pytest.raises(WeightsError, match="encoder_path"):
        build_encoder(name)
    with pytest.raises(WeightsError, match="nope.vec"):
        build_encoder(name, path=str(models[name].parent / "nope.vec"))


def test_registry_names_and_pooling_errors():
    for name in ["minilm", "clip-ViT-B-32", "clip-ViT-L-14", "bert-base", "roberta-large", "gpt2", "hf"]:
        assert name in ENCODERS
    assert {"fasttext", "glove"} <= set(ENCODERS.names())
    with pytest.raises(ConfigError, match="unknown"):
        build_encoder("minilm", pooling="max")
    with pytest.raises(ConfigError, match="does not apply"):
        build_encoder("glove", pooling="pooler")
