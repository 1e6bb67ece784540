"""Inputs and options of the evaluation: checked tensors, the option table, and the optional faiss."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

MAP_CUTOFF = 1000
"""Cut-off of ``map_at_1000`` and the smallest k of the kNN pass."""

PROVENANCE_KEYS = (
    "excluded_queries",
    "knn_k",
    "nmi_k",
    "nmi_iterations",
    "nmi_iterations_run",
    "nmi_seed",
    "nmi_faiss",
)
"""Keys of :func:`~langdml_core.evaluate.retrieval_metrics` that say how the metrics were computed (numbers,
not metrics)."""


def is_provenance(key: str) -> bool:
    """Whether a result key (``knn_k`` or, in a trial's row, ``test/knn_k``) is one of
    :data:`PROVENANCE_KEYS`: trackers record those as tags, not as metrics."""
    return key.rpartition("/")[2] in PROVENANCE_KEYS


DEFAULT_OPTIONS: dict[str, Any] = {
    "chunk_size": None,  # queries per chunk; None: ~512 MiB of similarities over the chunks in flight
    "knn_backend": "exact",  # "exact" (the chunked pass) or "faiss" (flat inner-product index)
    "gemm": "auto",  # matrix products on CPU: "numpy" (its BLAS), "torch", or "auto" (= numpy on CPU)
    "nmi_k": None,  # clusters for NMI; None: the number of test classes (the release: training classes)
    "nmi_iterations": 20,
    "nmi_seed": 0,
    "nmi_backend": "auto",  # "faiss", "torch", or "auto" (= torch; see resolve_options)
}


def nmi_clusters_k(clusters: str, train_classes: int, split_size: int) -> int | None:
    """``nmi_k`` for :func:`retrieval_metrics` from ``eval.nmi_clusters``: None for "test" (k = the number of
    classes of the evaluated split), the number of training classes for "train" (the release), capped at
    the split's size (k-means needs k <= N; the k used is logged as ``nmi_k``)."""
    if clusters == "test":
        return None
    if clusters == "train":
        return min(int(train_classes), int(split_size))
    raise ValueError(f"nmi clusters={clusters!r} must be 'test' or 'train'")


def as_inputs(embeddings, labels, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked (embeddings (N, D) float32 contiguous, labels (N,) int64) on ``device`` (default: the
    embeddings' own) from numpy arrays or tensors; labels None: all zeros."""
    emb = embeddings if torch.is_tensor(embeddings) else torch.from_numpy(np.asarray(embeddings))
    if labels is None:
        lab = torch.zeros(emb.shape[0], dtype=torch.int64)
    else:
        lab = labels if torch.is_tensor(labels) else torch.from_numpy(np.asarray(labels))
        if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
            raise TypeError(f"labels must be integers, got {lab.dtype}")
    device = torch.device(device) if device is not None else emb.device
    emb = emb.detach().to(device=device, dtype=torch.float32).contiguous()
    lab = lab.detach().to(device=device, dtype=torch.int64).reshape(-1)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {tuple(emb.shape)}")
    if emb.shape[0] != lab.shape[0]:
        raise ValueError(f"{emb.shape[0]} embeddings but {lab.shape[0]} labels")
    if emb.shape[0] < 2:
        raise ValueError("leave-one-out retrieval needs at least 2 embeddings")
    if not bool(torch.isfinite(emb).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    return emb, lab


def faiss_or_none():
    """The faiss module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def resolve_options(labels=None, **options) -> dict[str, Any]:
    """The full options :func:`retrieval_metrics` uses for these labels (names and numbers).

    ``nmi_k`` is resolved when ``labels`` are given (None: the number of classes). ``nmi_backend`` "auto" is
    "torch" (:func:`~langdml_core.evaluate.kmeans.kmeans_torch`: exact Lloyd iterations that stop at a fixed
    point, bf16-screened on CPUs with bf16 dot products), chosen by measurement at SOP size on two cores
    (tests/manual/kmeans_backends.py); "faiss" is the k-means pytorch-metric-learning runs.
    """
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown evaluation option(s) {sorted(unknown)}; known: {sorted(DEFAULT_OPTIONS)}")
    resolved = {**DEFAULT_OPTIONS, **options}
    if resolved["knn_backend"] not in ("exact", "faiss"):
        raise ValueError(f"knn_backend={resolved['knn_backend']!r} must be 'exact' or 'faiss'")
    if resolved["gemm"] not in ("auto", "numpy", "torch"):
        raise ValueError(f"gemm={resolved['gemm']!r} must be 'auto', 'numpy' or 'torch'")
    if resolved["nmi_backend"] not in ("auto", "faiss", "torch"):
        raise ValueError(f"nmi_backend={resolved['nmi_backend']!r} must be 'auto', 'faiss' or 'torch'")
    if int(resolved["nmi_iterations"]) < 0:
        raise ValueError("nmi_iterations must be >= 0")
    if resolved["nmi_backend"] == "auto":
        resolved["nmi_backend"] = "torch"
    if labels is not None and resolved["nmi_k"] is None:
        lab = labels if torch.is_tensor(labels) else torch.as_tensor(np.asarray(labels))
        resolved["nmi_k"] = int(torch.unique(lab).numel())
    return resolved
