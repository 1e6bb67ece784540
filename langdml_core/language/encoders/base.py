"""The text-encoder interface every family implements, the registries they fill, and shared helpers."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import numpy as np

from langdml_core.config import CHOICES
from langdml_core.errors import ConfigError
from langdml_core.registry import Registry

ENCODERS = Registry("language encoder")
"""name -> builder(path="", pooling="auto", device="cpu") -> TextEncoder"""

WEIGHTS = Registry("language encoder weights")
"""name -> locator(path="") -> the local file or folder the encoder's builder loads (WeightsError if none):
cache keys digest these files, so changed weights never reuse another's embeddings."""

POOLINGS = CHOICES["language.pooling"]


# ---- helpers -----------------------------------------------------------------------------------------
def hub_offline() -> None:
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


def check_pooling(name: str, pooling: str, allowed: tuple[str, ...]) -> None:
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
