"""transformers encoders (bert-base, roberta-large, gpt2, hf): a save_pretrained folder or the Hub cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from langdml_core.cache import files_digest, hf_hub_cache
from langdml_core.errors import ConfigError, WeightsError
from langdml_core.language.encoders.base import ENCODERS, WEIGHTS, TextEncoder, check_pooling, hub_offline

log = logging.getLogger(__name__)


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
    check_pooling(name, pooling, spec.allowed)
    hub_offline()
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
