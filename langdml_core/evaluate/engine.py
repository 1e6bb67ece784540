"""The exact chunked kNN pass (every kNN metric from one pass), the faiss alternative, and :func:`knn`.

Per chunk of queries, one matrix product gives the similarity rows (memory bounded by the chunk, never
N x N; the columns hold the items in a fixed pseudo-random order), and :mod:`~langdml_core.evaluate.ranks`
turns them into the exact ranks of each query's same-class items within k = max(1000, largest class,
max(ks)) capped by N - 1. The query itself is excluded by its INDEX. Products and threads:
:mod:`~langdml_core.evaluate.products`.
"""

from __future__ import annotations

import numpy as np
import torch

from langdml_core.evaluate.options import as_inputs, faiss_or_none
from langdml_core.evaluate.products import auto_chunk_rows, blas_threads, full_fp32, map_products
from langdml_core.evaluate.ranks import (
    INT64_MIN,
    LOW32,
    NOT_RANKED,
    Columns,
    candidates_np,
    candidates_torch,
    keys_np,
    keys_torch,
    ranks_np,
    ranks_torch,
)


class Classes:
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


class Sums:
    """Running sums (float64) of the per-query kNN metrics over the valid queries."""

    def __init__(self, ks, cutoff: int, device):
        self.ks = tuple(ks)
        self.cutoff = cutoff
        self.count = 0
        names = [f"recall_at_{k}" for k in self.ks] + ["r_precision", "map_at_r", f"map_at_{cutoff}"]
        self.sums = {name: torch.zeros((), dtype=torch.float64, device=device) for name in names}

    def add(self, ranks: torch.Tensor, class_size: torch.Tensor) -> None:
        """ranks: (Q, P) ranks of each valid query's same-class items, ``NOT_RANKED`` beyond k."""
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


def knn_k(n: int, classes: Classes, ks, cutoff: int) -> int:
    return min(max(cutoff, classes.largest, max(ks)), n - 1)


def mask_queries(start: int, stop: int, sims, cols: Columns) -> None:
    """The query itself is excluded BY INDEX: its own similarity becomes -inf."""
    if torch.is_tensor(sims):
        local = torch.arange(stop - start, device=sims.device)
        sims[local, cols.inv[start:stop]] = -torch.inf
    else:
        sims[np.arange(stop - start), cols.inv_np[start:stop]] = -np.inf


@torch.no_grad()
def knn_metrics_exact(
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
    classes = Classes(lab)
    k = knn_k(n, classes, ks, cutoff)
    cols = Columns(n, k, emb.device)
    valid_all = classes.size > 1

    def chunk(start, stop, sims, mask):
        valid = valid_all[start:stop]
        if not bool(valid.any()):
            return None
        mask_queries(start, stop, sims, cols)
        members, ok = classes.members(torch.arange(start, stop, device=emb.device))
        if torch.is_tensor(sims):
            ranks = ranks_torch(sims, cols, members, ok)
        else:
            ranks = torch.from_numpy(ranks_np(sims, cols, members.numpy(), ok.numpy(), mask))
        return ranks[valid], classes.size[start:stop][valid]

    sums = Sums(ks, cutoff, emb.device)
    for result in map_products(emb, emb[cols.perm], chunk, chunk_size, gemm, engine):
        if result is not None:
            sums.add(*result)
    return sums.result(), k


@torch.no_grad()
def knn_metrics_faiss(
    emb: torch.Tensor, lab: torch.Tensor, ks, cutoff: int, chunk_size: int | None
) -> tuple[dict[str, float], int]:
    """Exact leave-one-out metrics from a flat inner-product faiss index (faiss's own similarities).

    faiss returns the top k + 1 + margin by its similarity, in its own order among ties. A row is exact
    when its k-th non-query similarity is strictly above the last one returned (every item tied with or
    above the k-th was then returned; items are then ranked by (similarity, lower index)); other rows
    are searched again with a 4x larger margin.
    """
    faiss = faiss_or_none()
    if faiss is None:
        raise ImportError("knn_backend='faiss' needs faiss (pip install faiss-cpu or faiss-gpu)")
    n, d = emb.shape
    classes = Classes(lab.cpu())
    k = knn_k(n, classes, ks, cutoff)
    data = np.ascontiguousarray(emb.cpu().numpy())
    index = faiss.IndexFlatIP(d)
    on_gpu = emb.device.type == "cuda" and faiss.get_num_gpus() > 0  # never index_cpu_to_all_gpus blindly
    if on_gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), emb.device.index or 0, index)
    index.add(data)
    labels = lab.cpu()
    smallest = torch.iinfo(torch.int64).min
    step = auto_chunk_rows(4 * (k + 64), chunk_size)
    sums = Sums(ks, cutoff, "cpu")
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
                keys = torch.where(x | (v < kth[exact][:, None]), smallest, keys_torch(v, f.clamp_min(0)))
                top = torch.topk(keys, k, dim=1).indices  # unique keys: exact order
                neighbours = f.gather(1, top)
                hits = labels[neighbours] == labels[rows][:, None]
                positions = torch.arange(1, k + 1, dtype=torch.int64)
                ranks = torch.sort(torch.where(hits, positions, NOT_RANKED), dim=1).values
                sums.add(ranks[:, : int(classes.size[rows].max()) - 1], classes.size[rows])
            todo = todo[~exact]
            margin *= 4
    return sums.result(), k


@torch.no_grad()
def knn(
    embeddings,
    k: int,
    chunk_size: int | None = None,
    *,
    queries=None,
    gemm: str = "auto",
    engine: str | None = None,
) -> torch.Tensor:
    """Indices (Q, k) of the k most similar rows (dot product) of each query row, the query itself excluded
    by index, ties broken by lower index; k is capped by N - 1. ``queries``: the row indices to search for
    (default: every row, Q = N). Exact; memory bounded by the chunk size."""
    emb, _ = as_inputs(embeddings, None, None)
    n = emb.shape[0]
    k = min(int(k), n - 1)
    cols = Columns(n, k, emb.device)
    rows = torch.arange(n) if queries is None else torch.as_tensor(queries, dtype=torch.int64).reshape(-1)
    if rows.numel() and not 0 <= int(rows.min()) <= int(rows.max()) < n:
        raise ValueError(f"queries must be row indices in [0, {n}), got {rows.min()}..{rows.max()}")
    own_column = cols.inv.cpu()[rows]

    def chunk(start, stop, sims, mask):
        if torch.is_tensor(sims):  # the query itself is excluded BY INDEX
            sims[
                torch.arange(stop - start, device=sims.device), own_column[start:stop].to(sims.device)
            ] = -torch.inf
        else:
            sims[np.arange(stop - start), own_column[start:stop].numpy()] = -np.inf
        if torch.is_tensor(sims):
            values, items, _ = candidates_torch(sims, cols)
            keys = torch.where(
                torch.isinf(values), int(INT64_MIN), keys_torch(values, items.clamp_max(n - 1))
            )
            return LOW32 - (torch.topk(keys, k, dim=1).values & LOW32)
        values, items, _ = candidates_np(sims, cols, mask)
        keys = np.where(np.isinf(values), INT64_MIN, keys_np(values, np.minimum(items, n - 1)))
        c = keys.shape[1]
        top = np.sort(np.partition(keys, c - k, axis=1)[:, c - k :], axis=1)[:, ::-1]
        return torch.from_numpy(LOW32 - (top & LOW32))  # unique keys: the order is exact

    if rows.numel() == 0:
        return torch.empty((0, k), dtype=torch.int64, device=emb.device)
    with blas_threads(), full_fp32():
        chunks = map_products(
            emb[rows.to(emb.device)].contiguous(), emb[cols.perm], chunk, chunk_size, gemm, engine
        )
        return torch.cat(chunks).to(emb.device)
