"""k-means (Lloyd's, exact nearest-centroid assignment) and NMI.

NMI is sklearn's normalized_mutual_info_score (arithmetic mean) between the labels and the clusters of a
k-means run: :func:`kmeans_torch` (CPU or GPU) or :func:`kmeans_faiss` (the k-means pytorch-metric-learning
runs). The seed, the iterations asked and run, and the backend are returned with the metric.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from langdml_core.evaluate.options import as_inputs, faiss_or_none, resolve_options
from langdml_core.evaluate.products import blas_threads, full_fp32, map_products
from langdml_core.evaluate.screen import Assigner


def assign_nearest(x_aug: torch.Tensor, centroids: torch.Tensor, gemm: str) -> torch.Tensor:
    """Nearest centroid by float32 scores (ties: lower centroid index) of each row of x_aug = [x, 1]: the
    plain float32 argmax, one product and one pass (k-means uses the exact :class:`Assigner`)."""
    # argmax of x.c - |c|^2 / 2 = argmin of |x - c|^2 (|x|^2 is the same for every centroid)
    c_aug = torch.cat([centroids, -0.5 * (centroids * centroids).sum(1, keepdim=True)], dim=1).contiguous()

    def chunk(start, stop, scores, _):
        if torch.is_tensor(scores):
            return scores.argmax(dim=1)
        return torch.from_numpy(scores.argmax(axis=1))

    return torch.cat(map_products(x_aug, c_aug, chunk, None, gemm, None)).to(x_aug.device)


class KMeansResult(NamedTuple):
    assignment: torch.Tensor  # (N,) int64: the nearest final centroid of every point
    centroids: torch.Tensor  # (k, D) float32
    iterations: int  # Lloyd iterations computed (fewer than asked when a fixed point came first)


def lloyd_step(
    assign: Assigner, x: torch.Tensor, centroids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd iteration: (each point's nearest centroid, the means of the new clusters). An empty
    cluster keeps its centroid; the sums are accumulated in float64, in index order on CPU."""
    assignment = assign(centroids)
    k = centroids.shape[0]
    sums = torch.zeros((k, x.shape[1]), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], 8192):
        sums.index_add_(0, assignment[start : start + 8192], x[start : start + 8192].double())
    counts = torch.bincount(assignment, minlength=k)
    filled = counts > 0
    moved = centroids.clone()
    moved[filled] = (sums[filled] / counts[filled, None]).to(centroids.dtype)
    return assignment, moved


@torch.no_grad()
def kmeans_torch(
    x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0, *, gemm: str = "auto", screen: str = "auto"
) -> KMeansResult:
    """Lloyd's k-means in torch (CPU or GPU), every assignment exact (:mod:`~langdml_core.evaluate.screen`).

    Initial centroids: k distinct points drawn with ``torch.randperm`` seeded by ``seed`` (on CPU, so the
    draw is the same on every device). Each iteration assigns every point to its nearest centroid (squared
    L2, exact, ties to the lower centroid index) and moves each centroid to the mean of its points; an empty
    cluster keeps its centroid. An iteration that changes no assignment is a fixed point (the means, hence
    every later iteration, stay the same), so the loop stops there: the result equals running all
    ``iterations``. The returned assignment is each point's nearest final centroid. ``screen`` ("auto",
    "bf16", "fp32") only sets how the exact assignment is found (bf16 on CPUs with bf16 dot products);
    ``gemm`` the float32 products on CPU (numpy's BLAS or torch).
    """
    x = x.float().contiguous()
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N, got k={k}, N={n}")
    generator = torch.Generator().manual_seed(int(seed))
    init = torch.randperm(n, generator=generator)[:k].to(x.device)
    centroids = x[init].clone()
    assign = Assigner(x, screen, gemm)
    previous = None
    with blas_threads(), full_fp32():
        for done in range(int(iterations)):
            assignment, moved = lloyd_step(assign, x, centroids)
            if previous is not None and torch.equal(assignment, previous):
                return KMeansResult(assignment, centroids, done + 1)  # a fixed point
            centroids, previous = moved, assignment
        assignment = assign(centroids)
    return KMeansResult(assignment, centroids, int(iterations))


def kmeans_faiss(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0) -> KMeansResult:
    """faiss k-means (GPU when faiss has one and x is on CUDA), every point used (no subsampling), then
    nearest-centroid assignment. faiss stops early once an iteration leaves its objective unchanged."""
    faiss = faiss_or_none()
    if faiss is None:
        raise ImportError("nmi_backend='faiss' needs faiss (pip install faiss-cpu or faiss-gpu)")
    data = np.ascontiguousarray(x.detach().float().cpu().numpy())
    n, d = data.shape
    gpu = x.device.type == "cuda" and faiss.get_num_gpus() > 0  # never index_cpu_to_all_gpus without GPUs
    km = faiss.Kmeans(
        d,
        int(k),
        niter=int(iterations),
        seed=int(seed),
        gpu=gpu,
        verbose=False,
        max_points_per_centroid=max(n, 1),  # cluster every point, as the definition says
        min_points_per_centroid=1,  # no "please provide more points" warning
    )
    km.train(data)
    _, assignment = km.index.search(data, 1)
    return KMeansResult(
        torch.from_numpy(assignment[:, 0].astype(np.int64)).to(x.device),
        torch.from_numpy(np.asarray(km.centroids)).to(x.device),
        len(km.iteration_stats or ()),
    )


def compute_nmi(emb: torch.Tensor, lab: torch.Tensor, opts: dict[str, Any]) -> tuple[float, int]:
    """(NMI, k-means iterations run) of checked inputs (:func:`as_inputs`) under resolved options
    (:func:`resolve_options`: ``nmi_k``, ``nmi_iterations``, ``nmi_seed``, ``nmi_backend``, ``gemm``)."""
    from sklearn.metrics import normalized_mutual_info_score

    k, iterations, seed = int(opts["nmi_k"]), int(opts["nmi_iterations"]), int(opts["nmi_seed"])
    if opts["nmi_backend"] == "faiss":
        result = kmeans_faiss(emb, k, iterations, seed)
    else:
        result = kmeans_torch(emb, k, iterations, seed, gemm=opts["gemm"])
    labels, clusters = lab.cpu().numpy(), result.assignment.cpu().numpy()
    return float(
        normalized_mutual_info_score(labels, clusters, average_method="arithmetic")
    ), result.iterations


def nmi_score(
    embeddings,
    labels,
    *,
    k: int | None = None,
    iterations: int = 20,
    seed: int = 0,
    backend: str = "auto",
    gemm: str = "auto",
) -> float:
    """NMI (sklearn, arithmetic mean) between the labels and k-means clusters (k: number of classes)."""
    emb, lab = as_inputs(embeddings, labels, None)
    opts = resolve_options(
        lab, nmi_k=k, nmi_iterations=iterations, nmi_seed=seed, nmi_backend=backend, gemm=gemm
    )
    return compute_nmi(emb, lab, opts)[0]
