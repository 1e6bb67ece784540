"""CLIP text towers (open_clip): a local checkpoint, or one already in the Hugging Face / CLIP cache."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from langdml_core.cache import files_digest, hf_hub_cache
from langdml_core.errors import ConfigError, WeightsError
from langdml_core.language.encoders.base import ENCODERS, WEIGHTS, TextEncoder, check_pooling, hub_offline


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
    check_pooling(name, pooling, ("last",))  # the end-of-text token is the last non-pad token
    hub_offline()
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
