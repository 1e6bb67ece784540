"""Leave-one-out retrieval evaluation on a held-out split (method.md section 8).

One exact, chunked kNN pass gives every kNN metric; k-means gives NMI.

Similarity is the dot product of the embeddings as given (cosine for the L2-normalised embeddings the
models here produce). The query is excluded by its INDEX, never by dropping "the first neighbour" (an
exact duplicate of the query is a genuine neighbour). Ties in similarity are broken by index, lower
first. Queries whose class has no other member are excluded from the kNN metrics and counted.

Metric keys (plain floats; '@' is avoided because MLflow rejects it):

- ``recall_at_{k}`` for k in ``ks``: share of queries with a same-class item among their k nearest.
- ``r_precision``: share of same-class items among the R nearest, R = class size - 1.
- ``map_at_r`` (Musgrave et al. 2020): mean of (1/R) sum_{i<=R} P(i) rel(i).
- ``map_at_1000`` (the paper's/Roth convention): mean of (1/n_c) sum_{i<=1000} P(i) rel(i), n_c = class
  size INCLUDING the query, so a perfect score is R/(R+1).
- ``nmi``: k-means (nearest-centroid assignment) vs the labels, sklearn's normalized_mutual_info_score
  (arithmetic mean).

How the numbers were computed is returned with them, as numbers (train.py logs every key as a number):
``excluded_queries``, ``knn_k``, ``nmi_k``, ``nmi_iterations``, ``nmi_iterations_run``, ``nmi_seed``,
``nmi_faiss`` (1 for faiss k-means, 0 for torch k-means); :func:`resolve_options` returns the full options,
names included.

Modules: :mod:`.retrieval` (:func:`embed`, :func:`retrieval_metrics`, the final test embeddings' file), :mod:`.options` (inputs and
options), :mod:`.engine` (the exact chunked kNN pass, the faiss alternative, :func:`knn`), :mod:`.ranks`
(exact ranks from similarity rows), :mod:`.products` (chunked products and threads), :mod:`.kmeans`
(k-means and NMI), :mod:`.screen` (k-means' exact nearest-centroid assignment through a bf16 screen).
"""

from langdml_core.evaluate.engine import knn, knn_metrics_exact, knn_metrics_faiss
from langdml_core.evaluate.kmeans import (
    KMeansResult,
    assign_nearest,
    compute_nmi,
    kmeans_faiss,
    kmeans_torch,
    lloyd_step,
    nmi_score,
)
from langdml_core.evaluate.options import (
    DEFAULT_OPTIONS,
    MAP_CUTOFF,
    PROVENANCE_KEYS,
    as_inputs,
    faiss_or_none,
    nmi_clusters_k,
    resolve_options,
)
from langdml_core.evaluate.products import auto_chunk_rows, map_products
from langdml_core.evaluate.retrieval import (
    EMBEDDINGS_FILE,
    embed,
    load_embeddings,
    retrieval_metrics,
    save_embeddings,
)
from langdml_core.evaluate.screen import Assigner

__all__ = [
    "EMBEDDINGS_FILE",
    "load_embeddings",
    "save_embeddings",
    "Assigner",
    "chunk_rows",
    "nearest_centroids",
    "nmi_with_iterations",
    "DEFAULT_OPTIONS",
    "KMeansResult",
    "MAP_CUTOFF",
    "PROVENANCE_KEYS",
    "as_inputs",
    "assign_nearest",
    "auto_chunk_rows",
    "compute_nmi",
    "embed",
    "faiss_or_none",
    "kmeans_faiss",
    "kmeans_torch",
    "knn",
    "knn_metrics_exact",
    "knn_metrics_faiss",
    "lloyd_step",
    "map_products",
    "nmi_clusters_k",
    "nmi_score",
    "resolve_options",
    "retrieval_metrics",
]


# ---- what `langdml bench eval` times, under public names (thin wrappers, no logic of their own) ----------
def chunk_rows(n_columns: int, workers: int | None = None) -> int:
    """Query rows per chunk of the kNN pass against ``n_columns`` items, ``workers`` chunks in flight."""
    import torch

    return auto_chunk_rows(n_columns, None, workers or torch.get_num_threads())


def nearest_centroids(x_aug, centroids, gemm: str = "auto"):
    """The plain float32 k-means assignment step of each row of x_aug = [x, 1]."""
    return assign_nearest(x_aug, centroids, gemm)


def nmi_with_iterations(embeddings, labels, **options) -> tuple[float, int]:
    """(NMI, k-means iterations run) as :func:`retrieval_metrics` computes them, with its options."""
    emb, lab = as_inputs(embeddings, labels, None)
    return compute_nmi(emb, lab, resolve_options(lab, **options))
