"""The two entry points training uses: :func:`embed` a split, and :func:`retrieval_metrics` of it."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader

from langdml_core.evaluate.engine import knn_metrics_exact, knn_metrics_faiss
from langdml_core.evaluate.kmeans import compute_nmi
from langdml_core.evaluate.options import MAP_CUTOFF, as_inputs, resolve_options
from langdml_core.evaluate.products import blas_threads, full_fp32


@torch.no_grad()
def embed(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (N, D) float32 on CPU and labels (N,) int64 of a whole split, model in eval mode.

    ``precision`` (``eval.precision``): "fp32" (no autocast, the release), "bf16" (bf16 autocast on any
    device), "auto" (bf16 on CUDA, else fp32)."""
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision={precision!r} must be 'fp32', 'bf16' or 'auto'")
    was_training = model.training
    model.eval()
    chunks, labels = [], []
    use_amp = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    for images, y in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = model(images.to(device, non_blocking=True))
        chunks.append(out.float().cpu())
        labels.append(torch.as_tensor(y))
    model.train(was_training)
    return torch.cat(chunks), torch.cat(labels).long()


def retrieval_metrics(
    embeddings,
    labels,
    *,
    ks=(1, 2, 4, 8),
    nmi: bool = True,
    device=None,
    timings: dict[str, float] | None = None,
    **options,
) -> dict[str, float]:
    """All evaluation metrics of a split (see :mod:`langdml_core.evaluate`) as plain numbers.

    ``embeddings`` (N, D) and ``labels`` (N,) may be numpy arrays or torch tensors; ``device`` (default:
    the embeddings' device) runs the pass on CPU or GPU. Options (see :data:`DEFAULT_OPTIONS`):
    ``chunk_size``, ``knn_backend`` ("exact" | "faiss"), ``gemm`` ("auto" | "numpy" | "torch"), ``nmi_k``
    (None = number of test classes; e.g. the number of training classes, as the release), ``nmi_iterations``
    (20), ``nmi_seed`` (0), ``nmi_backend`` ("auto" | "faiss" | "torch").

    Returns the metrics and, as numbers, how they were computed: ``excluded_queries`` (queries whose
    class has no other member, left out of the kNN metrics), ``knn_k``, and with NMI ``nmi_k``,
    ``nmi_iterations`` (the most asked), ``nmi_iterations_run`` (computed: k-means stops at a fixed point),
    ``nmi_seed``, ``nmi_faiss`` (1: faiss k-means, 0: torch k-means). A ``timings``
    dict, when given, receives the seconds spent in the kNN pass (``knn_s``) and in NMI (``nmi_s``).
    """
    started = time.perf_counter()
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks={ks!r} must be positive integers")
    emb, lab = as_inputs(embeddings, labels, device)
    opts = resolve_options(lab, **options)
    with blas_threads(), full_fp32():
        if opts["knn_backend"] == "faiss":
            metrics, k = knn_metrics_faiss(emb, lab, ks, MAP_CUTOFF, opts["chunk_size"])
        else:
            metrics, k = knn_metrics_exact(emb, lab, ks, MAP_CUTOFF, opts["chunk_size"], opts["gemm"])
    knn_done = time.perf_counter()
    sizes = torch.unique(lab, return_counts=True)[1]
    result: dict[str, float] = dict(metrics)
    result["excluded_queries"] = int(sizes[sizes == 1].numel())
    result["knn_k"] = k
    if nmi:
        result["nmi"], iterations_run = compute_nmi(emb, lab, opts)
        result["nmi_k"] = int(opts["nmi_k"])
        result["nmi_iterations"] = int(opts["nmi_iterations"])
        result["nmi_iterations_run"] = iterations_run
        result["nmi_seed"] = int(opts["nmi_seed"])
        result["nmi_faiss"] = int(opts["nmi_backend"] == "faiss")
    if timings is not None:
        timings["knn_s"] = knn_done - started
        timings["nmi_s"] = time.perf_counter() - knn_done
    return result


EMBEDDINGS_FILE = "test_embeddings.npz"
"""A trial's final test-split embeddings (``train_trial`` writes it; Tune trials log it to MLflow): what a
later analysis (retrieval examples, per-class changes between trials) reads instead of re-embedding."""


def save_embeddings(path, embeddings: torch.Tensor, labels: torch.Tensor, class_texts: list[str]) -> None:
    """float32 embeddings (N, D) as evaluated (float16 would move near-tied neighbours, so the metrics would not
    be recomputed exactly), int64 labels (N,) indexing ``class_texts``; compressed, written atomically."""
    import os

    import numpy as np

    tmp = f"{path}.tmp.npz"
    np.savez_compressed(
        tmp,
        embeddings=embeddings.detach().cpu().to(torch.float32).numpy(),
        labels=labels.detach().cpu().numpy().astype(np.int64),
        class_texts=np.array(class_texts, dtype=str),
    )
    os.replace(tmp, path)


def load_embeddings(path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(embeddings, labels, class texts) as ``save_embeddings`` wrote them."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return (
            torch.from_numpy(data["embeddings"]),
            torch.from_numpy(data["labels"]),
            [str(text) for text in data["class_texts"]],
        )
