"""Exact ranks from a chunk of similarity rows: (similarity, index) keys, thresholds, candidates.

Every kNN metric needs only the ranks (1-based, similarity descending, then index ascending) of each
query's same-class items that rank within k. The columns of a similarity row hold the N items in a fixed
pseudo-random order (:class:`Columns`). A per-row threshold t is the ~1.6 k/s-th largest value of the first
N/s columns (a uniform sample), so about 1.6 k items reach it; a row where fewer than k do takes its exact
k-th largest value instead. Every item ranked <= k is then >= t (a candidate), and an item below t has >= k
items strictly above it, so it ranks beyond k and takes no part in any metric. The rank of a same-class
item is 1 + the number of candidates with a larger similarity + the number with an equal one and a lower
index: exact, ties included, with no sort of the N similarities. numpy functions (CPU) and torch ones
(GPU) compute the same thing.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LOW32 = (1 << 32) - 1
NOT_RANKED = torch.iinfo(torch.int64).max
"""Rank of a positive that ranks beyond k (or of padding)."""

INT64_MIN = np.iinfo(np.int64).min
THRESHOLD_MARGIN = 1.6  # a sampled threshold keeps ~1.6 k candidates per row; < k for ~0.3 % of rows


def keys_np(values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Unique int64 keys: a larger key is a larger similarity, or an equal one at a LOWER index.

    The float32 similarity becomes an order-preserving int32 (-0.0 folded onto +0.0) in the high half,
    2**32 - 1 - index the low half (N < 2**32).
    """
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.int32)
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)  # negative floats: reverse their order
    keys = bits.astype(np.int64)
    keys <<= 32
    keys += LOW32
    keys -= items
    return keys


def keys_torch(values: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """:func:`keys_np` in torch (any device)."""
    bits = (values.float() + 0.0).view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return bits.to(torch.int64) * (1 << 32) + (LOW32 - items)


class Columns:
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
            self.rank = min(self.sample, math.ceil(THRESHOLD_MARGIN * k / stride) + 2)


def threshold_np(sims: np.ndarray, cols: Columns) -> np.ndarray:
    """(Q,) per-row thresholds meant to leave at least k items >= t (rows that do not are redone)."""
    j = cols.sample - cols.rank
    return np.partition(sims[:, : cols.sample], j, axis=1)[:, j].astype(np.float32)


def threshold_torch(sims: torch.Tensor, cols: Columns) -> torch.Tensor:
    """:func:`threshold_np` in torch (GPU)."""
    return torch.topk(sims[:, : cols.sample], cols.rank, dim=1, sorted=False).values.amin(dim=1)


def candidates_np(sims: np.ndarray, cols: Columns, mask: np.ndarray, items: bool = True):
    """(values (Q, C) float32, items (Q, C) int64 or None, thresholds (Q,)) of every item >= its row's
    threshold; padding slots hold -inf and N.

    Rows with fewer than k items at or above the sampled threshold get the exact k-th largest value
    instead, so every row has >= k candidates: every item ranked <= k is one, and an item below the
    threshold has >= k items strictly above it. ``mask``: a bool buffer of at least sims.size.
    """
    q, w = sims.shape
    k = cols.k
    threshold = threshold_np(sims, cols)
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


def candidates_torch(sims: torch.Tensor, cols: Columns):
    """:func:`candidates_np` in torch (GPU); short rows take the exact k-th value, the chunk is redone."""
    q, w = sims.shape
    threshold = threshold_torch(sims, cols)
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


def greater_equal_np(values: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def ranks_np(sims, cols: Columns, members, ok, mask) -> np.ndarray:
    """(Q, P) ranks (1-based) of the items ``members`` (where ``ok``) in each similarity row (columns in
    ``cols`` order), by similarity descending then index ascending; ``NOT_RANKED`` beyond k or not ok."""
    values, _, threshold = candidates_np(sims, cols, mask, items=False)
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
        gt, ge = greater_equal_np(values[group], query)
        for i, j in np.argwhere(ge - gt > 1):  # equal similarities (besides itself): lower index first
            r, v = group[i], query[i, j]
            tied = cols.perm_np[np.flatnonzero(sims[r] == v)]
            gt[i, j] += np.count_nonzero(tied < members[r, j])
        greater[group, :p] = gt
    return np.where(ok, greater + 1, NOT_RANKED)


def ranks_torch(sims, cols: Columns, members, ok) -> torch.Tensor:
    """:func:`ranks_np` in torch (GPU), with unique (similarity, index) keys."""
    values, items, threshold = candidates_torch(sims, cols)
    keys = torch.where(torch.isinf(values), int(INT64_MIN), keys_torch(values, items.clamp_max(cols.n - 1)))
    member_values = sims.gather(1, cols.inv[members])
    ok = ok & (member_values >= threshold[:, None])
    ordered = torch.sort(keys, dim=1).values
    not_above = torch.searchsorted(ordered, keys_torch(member_values, members).contiguous(), right=True)
    return torch.where(ok, keys.shape[1] - not_above + 1, NOT_RANKED)
