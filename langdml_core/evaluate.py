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

How the kNN pass stays exact and fast. Every metric above needs only the ranks (1-based, similarity
descending, then index ascending) of each query's same-class items that rank within k = max(1000, largest
class, max(ks)) capped by N - 1. Per chunk of queries, one matrix product gives the similarity rows (memory
bounded by the chunk, never N x N; the columns hold the items in a fixed pseudo-random order). A per-row
threshold t is the ~1.6 k/s-th largest value of the first N/s columns (a uniform sample), so about 1.6 k
items reach it; a row where fewer than k do takes its exact k-th largest value instead. Every item ranked
<= k is then >= t (a candidate), and an item below t has >= k items strictly above it, so it ranks beyond
k and takes no part in any metric. The rank of a same-class item is 1 + the number of candidates with a
larger similarity + the number with an equal one and a lower index: exact, ties included, with no sort
of the N similarities. On CPU, torch's thread count of chunks run at once, each a single-threaded product
(numpy's BLAS) and numpy post-processing (numpy releases the GIL); on GPU everything stays in torch.
:func:`knn` returns the neighbour indices themselves through the same candidates.
"""

from __future__ import annotations

import contextlib
import math
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

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
"""Keys of :func:`retrieval_metrics` that say how the metrics were computed (numbers, not metrics)."""

DEFAULT_OPTIONS: dict[str, Any] = {
    "chunk_size": None,  # queries per chunk; None: ~512 MiB of similarities over the chunks in flight
    "knn_backend": "exact",  # "exact" (the chunked pass below) or "faiss" (flat inner-product index)
    "gemm": "auto",  # matrix products on CPU: "numpy" (its BLAS), "torch", or "auto" (= numpy on CPU)
    "nmi_k": None,  # clusters for NMI; None: the number of test classes (the release: training classes)
    "nmi_iterations": 20,
    "nmi_seed": 0,
    "nmi_backend": "auto",  # "faiss", "torch", or "auto" (faiss when importable, else torch)
}

_LOW32 = (1 << 32) - 1
_NOT_RANKED = torch.iinfo(torch.int64).max  # rank of a positive that ranks beyond k (or padding)
_CHUNK_BYTES = 1 << 29


# --------------------------------------------------------------------------------------------------
# Embedding a split
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Inputs, options, matrix products
# --------------------------------------------------------------------------------------------------


def nmi_clusters_k(clusters: str, train_classes: int, split_size: int) -> int | None:
    """``nmi_k`` for :func:`retrieval_metrics` from ``eval.nmi_clusters``: None for "test" (k = the number of
    classes of the evaluated split), the number of training classes for "train" (the release), capped at
    the split's size (k-means needs k <= N; the k used is logged as ``nmi_k``)."""
    if clusters == "test":
        return None
    if clusters == "train":
        return min(int(train_classes), int(split_size))
    raise ValueError(f"nmi clusters={clusters!r} must be 'test' or 'train'")


def _as_inputs(embeddings, labels, device) -> tuple[torch.Tensor, torch.Tensor]:
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


def resolve_options(labels=None, **options) -> dict[str, Any]:
    """The full options :func:`retrieval_metrics` uses for these labels (names and numbers).

    ``nmi_k`` and ``nmi_backend`` are resolved when ``labels`` are given (None: number of classes;
    "auto": "faiss" when faiss is importable, else "torch").
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
        resolved["nmi_backend"] = "faiss" if _faiss() is not None else "torch"
    if labels is not None and resolved["nmi_k"] is None:
        lab = labels if torch.is_tensor(labels) else torch.as_tensor(np.asarray(labels))
        resolved["nmi_k"] = int(torch.unique(lab).numel())
    return resolved


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _blas_threads(threads: int | None = None):
    """Limit numpy's BLAS to ``threads`` (default: torch's thread count) while evaluating."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads or torch.get_num_threads(), user_api="blas")


@contextlib.contextmanager
def _full_fp32():
    """IEEE float32 products on GPU (no TF32) for the duration of an evaluation."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _use_numpy_gemm(device: torch.device, gemm: str) -> bool:
    # On CPU the BLAS numpy ships (OpenBLAS) is markedly faster than torch's MKL on AMD processors and
    # as fast elsewhere; both compute the same float32 product.
    return device.type == "cpu" and gemm in ("auto", "numpy")


class _Gemm:
    """out = a @ b.T for row chunks a of a fixed b, into a reusable buffer (numpy BLAS or torch)."""

    def __init__(self, b: torch.Tensor, use_numpy: bool):
        self.b = b
        self.use_numpy = use_numpy
        self.b_np = b.numpy() if use_numpy else None
        self._buffer: torch.Tensor | None = None

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        rows, cols = a.shape[0], self.b.shape[0]
        if self._buffer is None or self._buffer.shape[0] < rows:
            self._buffer = torch.empty((rows, cols), dtype=torch.float32, device=self.b.device)
        out = self._buffer[:rows]
        if self.use_numpy:
            np.dot(a.numpy(), self.b_np.T, out=out.numpy())
        else:
            torch.mm(a, self.b.T, out=out)
        return out


def _auto_chunk(n_columns: int, chunk_size: int | None, workers: int = 1) -> int:
    """Rows per chunk: ``chunk_size``, or ~512 MiB of float32 products over the chunks in flight, at most
    1024 rows per single-threaded worker (larger blocks run markedly slower on two cores) or 4096."""
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ValueError("chunk_size must be >= 1")
        return int(chunk_size)
    workers = max(workers, 1)
    rows = _CHUNK_BYTES // (4 * max(n_columns, 1) * workers)
    return int(max(64, min(1024 if workers > 1 else 4096, rows)))


# --------------------------------------------------------------------------------------------------
# (similarity, index) keys, thresholds, candidates, ranks
# --------------------------------------------------------------------------------------------------

_INT64_MIN = np.iinfo(np.int64).min
_THRESHOLD_MARGIN = 1.6  # a sampled threshold keeps ~1.6 k candidates per row; < k for ~0.3 % of rows


def _keys_np(values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Unique int64 keys: a larger key is a larger similarity, or an equal one at a LOWER index.

    The float32 similarity becomes an order-preserving int32 (-0.0 folded onto +0.0) in the high half,
    2**32 - 1 - index the low half (N < 2**32).
    """
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.int32)
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)  # negative floats: reverse their order
    keys = bits.astype(np.int64)
    keys <<= 32
    keys += _LOW32
    keys -= items
    return keys


def _keys_torch(values: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """:func:`_keys_np` in torch (any device)."""
    bits = (values.float() + 0.0).view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return bits.to(torch.int64) * (1 << 32) + (_LOW32 - items)


class _Columns:
    """The N reference items in a fixed pseudo-random column order, so that the leading columns of any
    similarity row are a uniform sample of it whatever the order of the data (e.g. sorted by class).

    ``perm[c]`` is the item in column c, ``inv[i]`` the column of item i. Each row's threshold is the
    ``rank``-th largest of its first ``sample`` columns: with sample = N and rank = k it is the exact k-th
    largest value; otherwise (N >= 4 k) the sample is N / stride columns and rank ~1.6 k / stride, which
    about 1.6 k items reach (rows where fewer than k do are redone with the exact k-th value).
    """

    def __init__(self, n: int, k: int, device):
        self.n, self.k = n, k
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        self.perm = perm.to(device)
        self.inv = torch.empty_like(perm).scatter_(0, perm, torch.arange(n)).to(device)
        self.perm_np, self.inv_np = perm.numpy(), self.inv.cpu().numpy()
        stride = max(1, min(32, n // (2 * k)))
        if stride == 1:
            self.sample, self.rank = n, k
        else:
            self.sample = -(-n // stride)
            self.rank = min(self.sample, math.ceil(_THRESHOLD_MARGIN * k / stride) + 2)


def _threshold_np(sims: np.ndarray, cols: _Columns) -> np.ndarray:
    """(Q,) per-row thresholds meant to leave at least k items >= t (rows that do not are redone)."""
    j = cols.sample - cols.rank
    return np.partition(sims[:, : cols.sample], j, axis=1)[:, j].astype(np.float32)


def _threshold_torch(sims: torch.Tensor, cols: _Columns) -> torch.Tensor:
    """:func:`_threshold_np` in torch (GPU)."""
    return torch.topk(sims[:, : cols.sample], cols.rank, dim=1, sorted=False).values.amin(dim=1)


def _candidates_np(sims: np.ndarray, cols: _Columns, mask: np.ndarray, items: bool = True):
    """(values (Q, C) float32, items (Q, C) int64 or None, thresholds (Q,)) of every item >= its row's
    threshold; padding slots hold -inf and N.

    Rows with fewer than k items at or above the sampled threshold get the exact k-th largest value
    instead, so every row has >= k candidates: every item ranked <= k is one, and an item below the
    threshold has >= k items strictly above it. ``mask``: a bool buffer of at least sims.size.
    """
    q, w = sims.shape
    k = cols.k
    threshold = _threshold_np(sims, cols)
    mask = mask[: q * w].reshape(q, w)
    np.greater_equal(sims, threshold[:, None], out=mask)
    flat = np.flatnonzero(mask)  # row-major: grouped by row
    row = flat // w
    counts = np.bincount(row, minlength=q)
    short = np.flatnonzero(counts < k)
    parts = [(flat, row, counts)]
    if short.size:  # redo those rows with their exact k-th value
        redo = sims[short]
        threshold[short] = np.partition(redo, w - k, axis=1)[:, w - k]
        keep = counts[row] >= k
        parts = [(flat[keep], row[keep], np.where(counts >= k, counts, 0))]
        local = np.flatnonzero(redo >= threshold[short][:, None])
        sub_row = short[local // w]
        parts.append((sub_row * w + local % w, sub_row, np.bincount(sub_row, minlength=q)))
    width = max(int(c.max()) for _, _, c in parts)
    values = np.full((q, width), -np.inf, dtype=np.float32)
    found = np.full((q, width), w, dtype=np.int64) if items else None
    for f, r, c in parts:
        slot = np.arange(f.size) - (np.cumsum(c) - c)[r] + r * width  # flat slot in the (Q, C) tables
        values.reshape(-1)[slot] = sims.reshape(-1)[f]
        if items:
            found.reshape(-1)[slot] = cols.perm_np[f - r * w]
    return values, found, threshold


def _candidates_torch(sims: torch.Tensor, cols: _Columns):
    """:func:`_candidates_np` in torch (GPU); short rows take the exact k-th value, the chunk is redone."""
    q, w = sims.shape
    threshold = _threshold_torch(sims, cols)
    for _ in range(2):
        flat = torch.nonzero((sims >= threshold[:, None]).view(-1)).squeeze(1)
        row = torch.div(flat, w, rounding_mode="floor")
        counts = torch.bincount(row, minlength=q)
        short = counts < cols.k
        if not bool(short.any()):
            break
        threshold[short] = torch.topk(sims[short], cols.k, dim=1, sorted=False).values.amin(dim=1)
    place = torch.arange(flat.numel(), device=sims.device) - (torch.cumsum(counts, 0) - counts)[row]
    width = int(counts.max())
    values = torch.full((q, width), -torch.inf, device=sims.device)
    items = torch.full((q, width), w, dtype=torch.int64, device=sims.device)
    values[row, place] = sims.reshape(-1)[flat]
    items[row, place] = cols.perm[flat - row * w]
    return values, items, threshold


def _greater_equal_np(values: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(#entries > v, #entries >= v) in each row of ``values`` (G, C) for each v of ``query`` (G, p)."""
    g, c = values.shape
    p = query.shape[1]
    if p <= 64:  # direct comparisons, (rows, p, C) bounded to ~16 M entries at a time
        gt, ge = np.empty((g, p), np.int64), np.empty((g, p), np.int64)
        step = max(1, (1 << 24) // max(1, p * c))
        for s in range(0, g, step):
            block, v = values[s : s + step, None, :], query[s : s + step, :, None]
            gt[s : s + step] = np.count_nonzero(block > v, axis=2)
            ge[s : s + step] = np.count_nonzero(block >= v, axis=2)
        return gt, ge
    ordered = np.sort(values, axis=1)
    le = np.stack([np.searchsorted(ordered[r], query[r], side="right") for r in range(g)]) if g else query
    lt = np.stack([np.searchsorted(ordered[r], query[r], side="left") for r in range(g)]) if g else query
    return (c - le).astype(np.int64), (c - lt).astype(np.int64)


def _ranks_np(sims, cols: _Columns, members, ok, mask) -> np.ndarray:
    """(Q, P) ranks (1-based) of the items ``members`` (where ``ok``) in each similarity row (columns in
    ``cols`` order), by similarity descending then index ascending; ``_NOT_RANKED`` beyond k or not ok."""
    values, _, threshold = _candidates_np(sims, cols, mask, items=False)
    member_values = np.take_along_axis(sims, cols.inv_np[members], axis=1)
    ok = ok & (member_values >= threshold[:, None])  # below the threshold: ranked beyond k
    # the items to rank first in each row, rows grouped by how many they have: no padded comparisons
    first = np.argsort(~ok, axis=1, kind="stable")
    member_values = np.take_along_axis(member_values, first, axis=1)
    members = np.take_along_axis(members, first, axis=1)
    ok = np.take_along_axis(ok, first, axis=1)
    how_many = ok.sum(axis=1)
    by_count = np.argsort(how_many, kind="stable")
    sorted_counts = how_many[by_count]
    greater = np.zeros(ok.shape, dtype=np.int64)
    for p in np.unique(sorted_counts[sorted_counts > 0]):
        group = by_count[np.searchsorted(sorted_counts, p) : np.searchsorted(sorted_counts, p, side="right")]
        query = member_values[group, :p]
        gt, ge = _greater_equal_np(values[group], query)
        for i, j in np.argwhere(ge - gt > 1):  # equal similarities (besides itself): lower index first
            r, v = group[i], query[i, j]
            tied = cols.perm_np[np.flatnonzero(sims[r] == v)]
            gt[i, j] += np.count_nonzero(tied < members[r, j])
        greater[group, :p] = gt
    return np.where(ok, greater + 1, _NOT_RANKED)


def _ranks_torch(sims, cols: _Columns, members, ok) -> torch.Tensor:
    """:func:`_ranks_np` in torch (GPU), with unique (similarity, index) keys."""
    values, items, threshold = _candidates_torch(sims, cols)
    keys = torch.where(torch.isinf(values), int(_INT64_MIN), _keys_torch(values, items.clamp_max(cols.n - 1)))
    member_values = sims.gather(1, cols.inv[members])
    ok = ok & (member_values >= threshold[:, None])
    ordered = torch.sort(keys, dim=1).values
    not_above = torch.searchsorted(ordered, _keys_torch(member_values, members).contiguous(), right=True)
    return torch.where(ok, keys.shape[1] - not_above + 1, _NOT_RANKED)


# --------------------------------------------------------------------------------------------------
# Class structure and metrics from ranks
# --------------------------------------------------------------------------------------------------


class _Classes:
    """Members of each class in index order, and each item's class size (labels int64)."""

    def __init__(self, labels: torch.Tensor):
        _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        self.inverse = inverse
        self.counts = counts
        self.size = counts[inverse]
        self.order = torch.argsort(inverse, stable=True)
        self.start = torch.cumsum(counts, 0) - counts
        self.largest = int(counts.max())

    def members(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(len(rows), P) indices of the other members of each row's class, and a validity mask."""
        cls = self.inverse[rows]
        width = int(self.counts[cls].max())
        arange = torch.arange(width, device=rows.device)
        valid = arange < self.counts[cls][:, None]
        index = (self.start[cls][:, None] + arange).clamp_max(self.order.numel() - 1)
        members = self.order[index]
        valid &= members != rows[:, None]
        return members, valid


class _Sums:
    """Running sums (float64) of the per-query kNN metrics over the valid queries."""

    def __init__(self, ks, cutoff: int, device):
        self.ks = tuple(ks)
        self.cutoff = cutoff
        self.count = 0
        names = [f"recall_at_{k}" for k in self.ks] + ["r_precision", "map_at_r", f"map_at_{cutoff}"]
        self.sums = {name: torch.zeros((), dtype=torch.float64, device=device) for name in names}

    def add(self, ranks: torch.Tensor, class_size: torch.Tensor) -> None:
        """ranks: (Q, P) ranks of each valid query's same-class items, ``_NOT_RANKED`` beyond k."""
        if ranks.shape[0] == 0:
            return
        ranks = torch.sort(ranks, dim=1).values
        order = torch.arange(1, ranks.shape[1] + 1, device=ranks.device, dtype=torch.float64)
        precision = order / ranks.to(torch.float64)  # P(i) at the i-th relevant item's rank
        r = (class_size - 1)[:, None]
        self.count += ranks.shape[0]
        first = ranks[:, 0]
        for k in self.ks:
            self.sums[f"recall_at_{k}"] += (first <= k).sum()
        within_r = ranks <= r
        r64 = r[:, 0].to(torch.float64)
        self.sums["r_precision"] += (within_r.sum(1) / r64).sum()
        self.sums["map_at_r"] += ((precision * within_r).sum(1) / r64).sum()
        within_c = ranks <= self.cutoff
        self.sums[f"map_at_{self.cutoff}"] += ((precision * within_c).sum(1) / (r64 + 1)).sum()

    def result(self) -> dict[str, float]:
        if self.count == 0:
            return {name: float("nan") for name in self.sums}
        return {name: float(value) / self.count for name, value in self.sums.items()}


def _knn_k(n: int, classes: _Classes, ks, cutoff: int) -> int:
    return min(max(cutoff, classes.largest, max(ks)), n - 1)


# --------------------------------------------------------------------------------------------------
# kNN metrics: exact chunked pass, or faiss
# --------------------------------------------------------------------------------------------------


def _map_products(
    a: torch.Tensor, b: torch.Tensor, fn, chunk_size: int | None, gemm: str, engine: str | None
):
    """[fn(start, stop, a[start:stop] @ b.T, scratch) for every row chunk of a], in chunk order.

    engine "numpy" (the default on CPU): products are numpy arrays; with numpy's BLAS, torch's thread
    count of chunks are in flight at once, each with a single-threaded product and its post-processing
    in its own thread (numpy releases the GIL), so no thread waits at a barrier and no idle BLAS thread
    spins while post-processing runs. engine "torch" (the default on GPU): torch tensors, one chunk at a
    time. ``scratch``: a reusable bool buffer of the product's size (numpy engine) or None.
    """
    engine = engine or ("numpy" if a.device.type == "cpu" else "torch")
    numpy_gemm = _use_numpy_gemm(a.device, gemm)
    workers = torch.get_num_threads() if (engine == "numpy" and numpy_gemm) else 1
    n, m = a.shape[0], b.shape[0]
    step = _auto_chunk(m, chunk_size, workers)
    chunks = [(s, min(s + step, n)) for s in range(0, n, step)]
    if engine == "torch" or not numpy_gemm:
        product = _Gemm(b, numpy_gemm)
        if engine == "torch":
            return [fn(s, e, product(a[s:e]), None) for s, e in chunks]
        scratch = np.empty(step * m, dtype=bool)
        return [fn(s, e, product(a[s:e]).numpy(), scratch) for s, e in chunks]
    a_np, b_np = a.numpy(), b.numpy()
    buffers: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(workers):
        buffers.put(None)

    def task(bounds):
        start, stop = bounds
        buffer = buffers.get()
        try:
            if buffer is None:
                buffer = (np.empty((step, m), np.float32), np.empty(step * m, bool))
            out = buffer[0][: stop - start]
            np.dot(a_np[start:stop], b_np.T, out=out)
            return fn(start, stop, out, buffer[1])
        finally:
            buffers.put(buffer)

    if workers == 1:
        return [task(bounds) for bounds in chunks]
    with _blas_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="langdml-eval") as pool:
        return list(pool.map(task, chunks))


def _mask_queries(start: int, stop: int, sims, cols: _Columns) -> None:
    """The query itself is excluded BY INDEX: its own similarity becomes -inf."""
    if torch.is_tensor(sims):
        local = torch.arange(stop - start, device=sims.device)
        sims[local, cols.inv[start:stop]] = -torch.inf
    else:
        sims[np.arange(stop - start), cols.inv_np[start:stop]] = -np.inf


@torch.no_grad()
def _knn_metrics_exact(
    emb: torch.Tensor,
    lab: torch.Tensor,
    ks,
    cutoff: int,
    chunk_size: int | None,
    gemm: str,
    engine: str | None = None,
) -> tuple[dict[str, float], int]:
    """The exact chunked pass: ranks of each query's same-class items among its candidates."""
    n = emb.shape[0]
    classes = _Classes(lab)
    k = _knn_k(n, classes, ks, cutoff)
    cols = _Columns(n, k, emb.device)
    valid_all = classes.size > 1

    def chunk(start, stop, sims, mask):
        valid = valid_all[start:stop]
        if not bool(valid.any()):
            return None
        _mask_queries(start, stop, sims, cols)
        members, ok = classes.members(torch.arange(start, stop, device=emb.device))
        if torch.is_tensor(sims):
            ranks = _ranks_torch(sims, cols, members, ok)
        else:
            ranks = torch.from_numpy(_ranks_np(sims, cols, members.numpy(), ok.numpy(), mask))
        return ranks[valid], classes.size[start:stop][valid]

    sums = _Sums(ks, cutoff, emb.device)
    for result in _map_products(emb, emb[cols.perm], chunk, chunk_size, gemm, engine):
        if result is not None:
            sums.add(*result)
    return sums.result(), k


@torch.no_grad()
def _knn_metrics_faiss(
    emb: torch.Tensor, lab: torch.Tensor, ks, cutoff: int, chunk_size: int | None
) -> tuple[dict[str, float], int]:
    """Exact leave-one-out metrics from a flat inner-product faiss index (faiss's own similarities).

    faiss returns the top k + 1 + margin by its similarity, in its own order among ties. A row is exact
    when its k-th non-query similarity is strictly above the last one returned (every item tied with or
    above the k-th was then returned; items are then ranked by (similarity, lower index)); other rows
    are searched again with a 4x larger margin.
    """
    faiss = _faiss()
    if faiss is None:
        raise ImportError("knn_backend='faiss' needs faiss (pip install faiss-cpu or faiss-gpu)")
    n, d = emb.shape
    classes = _Classes(lab.cpu())
    k = _knn_k(n, classes, ks, cutoff)
    data = np.ascontiguousarray(emb.cpu().numpy())
    index = faiss.IndexFlatIP(d)
    on_gpu = emb.device.type == "cuda" and faiss.get_num_gpus() > 0  # never index_cpu_to_all_gpus blindly
    if on_gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), emb.device.index or 0, index)
    index.add(data)
    labels = lab.cpu()
    smallest = torch.iinfo(torch.int64).min
    step = _auto_chunk(4 * (k + 64), chunk_size)
    sums = _Sums(ks, cutoff, "cpu")
    valid_all = classes.size > 1
    for start in range(0, n, step):
        stop = min(start + step, n)
        todo = torch.arange(start, stop)[valid_all[start:stop]]
        margin = 16
        while todo.numel():
            k_search = min(n, k + 1 + margin)
            if on_gpu and k_search > 2048:  # faiss GPU's k limit
                index, on_gpu = faiss.index_gpu_to_cpu(index), False
            values, found = index.search(data[todo.numpy()], k_search)
            values, found = torch.from_numpy(values), torch.from_numpy(found)
            drop = (found == todo[:, None]) | (found < 0)  # the query itself, by index; empty slots
            position = torch.cumsum(~drop, dim=1)
            kth = torch.where((position == k) & ~drop, values, torch.inf).amin(dim=1)
            exact = (kth > values[:, -1]) | (k_search >= n)
            rows = todo[exact]
            if rows.numel():
                v, f, x = values[exact], found[exact], drop[exact]
                keys = torch.where(x | (v < kth[exact][:, None]), smallest, _keys_torch(v, f.clamp_min(0)))
                top = torch.topk(keys, k, dim=1).indices  # unique keys: exact order
                neighbours = f.gather(1, top)
                hits = labels[neighbours] == labels[rows][:, None]
                positions = torch.arange(1, k + 1, dtype=torch.int64)
                ranks = torch.sort(torch.where(hits, positions, _NOT_RANKED), dim=1).values
                sums.add(ranks[:, : int(classes.size[rows].max()) - 1], classes.size[rows])
            todo = todo[~exact]
            margin *= 4
    return sums.result(), k


# --------------------------------------------------------------------------------------------------
# Public kNN
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def knn(
    embeddings, k: int, chunk_size: int | None = None, *, gemm: str = "auto", engine: str | None = None
) -> torch.Tensor:
    """Indices (N, k) of each row's k most similar rows (dot product), itself excluded by index, ties
    broken by lower index; k is capped by N - 1. Exact; memory bounded by the chunk size."""
    emb, _ = _as_inputs(embeddings, None, None)
    n = emb.shape[0]
    k = min(int(k), n - 1)
    cols = _Columns(n, k, emb.device)

    def chunk(start, stop, sims, mask):
        _mask_queries(start, stop, sims, cols)
        if torch.is_tensor(sims):
            values, items, _ = _candidates_torch(sims, cols)
            keys = torch.where(
                torch.isinf(values), int(_INT64_MIN), _keys_torch(values, items.clamp_max(n - 1))
            )
            return _LOW32 - (torch.topk(keys, k, dim=1).values & _LOW32)
        values, items, _ = _candidates_np(sims, cols, mask)
        keys = np.where(np.isinf(values), _INT64_MIN, _keys_np(values, np.minimum(items, n - 1)))
        c = keys.shape[1]
        top = np.sort(np.partition(keys, c - k, axis=1)[:, c - k :], axis=1)[:, ::-1]
        return torch.from_numpy(_LOW32 - (top & _LOW32))  # unique keys: the order is exact

    with _blas_threads(), _full_fp32():
        return torch.cat(_map_products(emb, emb[cols.perm], chunk, chunk_size, gemm, engine)).to(emb.device)


# --------------------------------------------------------------------------------------------------
# k-means and NMI
# --------------------------------------------------------------------------------------------------


def _assign(x_aug: torch.Tensor, centroids: torch.Tensor, gemm: str) -> torch.Tensor:
    """Nearest centroid (squared L2; ties: lower centroid index) of each row of x_aug = [x, 1]."""
    # argmax of x.c - |c|^2 / 2 = argmin of |x - c|^2 (|x|^2 is the same for every centroid)
    c_aug = torch.cat([centroids, -0.5 * (centroids * centroids).sum(1, keepdim=True)], dim=1).contiguous()

    def chunk(start, stop, scores, _):
        if torch.is_tensor(scores):
            return scores.argmax(dim=1)
        return torch.from_numpy(scores.argmax(axis=1))

    return torch.cat(_map_products(x_aug, c_aug, chunk, None, gemm, None)).to(x_aug.device)


class KMeansResult(NamedTuple):
    assignment: torch.Tensor  # (N,) int64: the nearest final centroid of every point
    centroids: torch.Tensor  # (k, D) float32
    iterations: int  # Lloyd iterations computed (fewer than asked when a fixed point came first)


@torch.no_grad()
def kmeans_torch(
    x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0, *, gemm: str = "auto"
) -> KMeansResult:
    """Lloyd's k-means in torch (CPU or GPU; numpy's BLAS for the products on CPU).

    Initial centroids: k distinct points drawn with ``torch.randperm`` seeded by ``seed`` (on CPU, so the
    draw is the same on every device). Each iteration assigns every point to its nearest centroid (squared
    L2, ties to the lower centroid index) and moves each centroid to the mean of its points; an empty
    cluster keeps its centroid. An iteration that changes no assignment is a fixed point (the means, hence
    every later iteration, stay the same), so the loop stops there: the result equals running all
    ``iterations``. The returned assignment is each point's nearest final centroid.
    """
    x = x.float().contiguous()
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N, got k={k}, N={n}")
    generator = torch.Generator().manual_seed(int(seed))
    init = torch.randperm(n, generator=generator)[:k].to(x.device)
    centroids = x[init].clone()
    x_aug = torch.cat([x, x.new_ones((n, 1))], dim=1)
    previous = None
    with _blas_threads(), _full_fp32():
        for done in range(int(iterations)):
            assignment = _assign(x_aug, centroids, gemm)
            if previous is not None and torch.equal(assignment, previous):
                return KMeansResult(assignment, centroids, done + 1)  # a fixed point
            sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
            counts = torch.bincount(assignment, minlength=k)
            filled = counts > 0
            centroids[filled] = sums[filled] / counts[filled, None].to(x.dtype)
            previous = assignment
        assignment = _assign(x_aug, centroids, gemm)
    return KMeansResult(assignment, centroids, int(iterations))


def kmeans_faiss(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0) -> KMeansResult:
    """faiss k-means (GPU when faiss has one and x is on CUDA), every point used (no subsampling), then
    nearest-centroid assignment. faiss stops early once an iteration leaves its objective unchanged."""
    faiss = _faiss()
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


def _nmi(emb: torch.Tensor, lab: torch.Tensor, opts: dict[str, Any]) -> tuple[float, int]:
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
    emb, lab = _as_inputs(embeddings, labels, None)
    opts = resolve_options(
        lab, nmi_k=k, nmi_iterations=iterations, nmi_seed=seed, nmi_backend=backend, gemm=gemm
    )
    return _nmi(emb, lab, opts)[0]


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------


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
    """All evaluation metrics of a split (see the module docstring) as plain numbers.

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
    emb, lab = _as_inputs(embeddings, labels, device)
    opts = resolve_options(lab, **options)
    with _blas_threads(), _full_fp32():
        if opts["knn_backend"] == "faiss":
            metrics, k = _knn_metrics_faiss(emb, lab, ks, MAP_CUTOFF, opts["chunk_size"])
        else:
            metrics, k = _knn_metrics_exact(emb, lab, ks, MAP_CUTOFF, opts["chunk_size"], opts["gemm"])
    knn_done = time.perf_counter()
    sizes = torch.unique(lab, return_counts=True)[1]
    result: dict[str, float] = dict(metrics)
    result["excluded_queries"] = int(sizes[sizes == 1].numel())
    result["knn_k"] = k
    if nmi:
        result["nmi"], iterations_run = _nmi(emb, lab, opts)
        result["nmi_k"] = int(opts["nmi_k"])
        result["nmi_iterations"] = int(opts["nmi_iterations"])
        result["nmi_iterations_run"] = iterations_run
        result["nmi_seed"] = int(opts["nmi_seed"])
        result["nmi_faiss"] = int(opts["nmi_backend"] == "faiss")
    if timings is not None:
        timings["knn_s"] = knn_done - started
        timings["nmi_s"] = time.perf_counter() - knn_done
    return result


# --------------------------------------------------------------------------------------------------
# Engine pieces that `langdml bench eval` times, under public names (thin wrappers, no logic of their own)
# --------------------------------------------------------------------------------------------------


def chunk_rows(n_columns: int, workers: int | None = None) -> int:
    """Query rows per chunk of the kNN pass against ``n_columns`` items, with ``workers`` chunks in flight
    (default: torch's thread count)."""
    return _auto_chunk(n_columns, None, workers or torch.get_num_threads())


def map_products(a: torch.Tensor, b: torch.Tensor, fn, chunk_size: int | None = None, gemm: str = "auto"):
    """[fn(start, stop, a[start:stop] @ b.T, scratch) for every row chunk of a] in the kNN pass's layout."""
    return _map_products(a, b, fn, chunk_size, gemm, None)


def nearest_centroids(x_aug: torch.Tensor, centroids: torch.Tensor, gemm: str = "auto") -> torch.Tensor:
    """The torch k-means assignment step: nearest centroid of each row of x_aug = [x, 1]."""
    return _assign(x_aug, centroids, gemm)


def nmi_with_iterations(embeddings, labels, **options) -> tuple[float, int]:
    """(NMI, k-means iterations run) as :func:`retrieval_metrics` computes them, with its options."""
    emb, lab = _as_inputs(embeddings, labels, None)
    return _nmi(emb, lab, resolve_options(lab, **options))
