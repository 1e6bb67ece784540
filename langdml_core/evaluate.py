"""Leave-one-out retrieval evaluation on a held-out split.

Exact cosine kNN in chunks (memory bounded by the chunk size, never an N x N matrix). The query is
excluded by its INDEX, not by dropping "the first neighbour" (which is wrong when an exact duplicate of
the query exists). Ties in similarity are broken by index, lower first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader


@torch.no_grad()
def embed(
    model: torch.nn.Module, loader: DataLoader, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (N, D) float32 on CPU and labels (N,) int64 of a whole split, model in eval mode."""
    was_training = model.training
    model.eval()
    chunks, labels = [], []
    use_amp = device.type == "cuda"
    for images, y in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = model(images.to(device, non_blocking=True))
        chunks.append(out.float().cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(chunks), torch.cat(labels).long()


@torch.no_grad()
def knn(embeddings: torch.Tensor, k: int, chunk_size: int = 4096) -> torch.Tensor:
    """Indices (N, k) of each row's k most similar rows, itself excluded, ties broken by lower index."""
    n = embeddings.shape[0]
    k = min(k, n - 1)
    out = torch.empty((n, k), dtype=torch.long)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = embeddings[start:stop] @ embeddings.T
        sims[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf  # the query, by index
        # torch.topk does not promise an order among equal values; a stable sort does.
        out[start:stop] = torch.sort(sims, dim=1, descending=True, stable=True).indices[:, :k]
    return out


def retrieval_metrics(embeddings, labels, *, ks=(1, 2, 4, 8), chunk_size: int = 4096) -> dict[str, float]:
    """Recall@k for each k (share of queries with a same-class item among their k nearest neighbours).

    Queries whose class has no other member cannot be answered and are excluded; their count is
    returned as ``excluded_queries``.
    """
    emb = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings) else embeddings).float()
    lab = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).long()
    _, inverse, counts = torch.unique(lab, return_inverse=True, return_counts=True)
    valid = counts[inverse] > 1
    neighbours = knn(emb, max(ks), chunk_size=chunk_size)
    hits = lab[neighbours] == lab[:, None]
    metrics = {f"recall_at_{k}": float(hits[valid, :k].any(dim=1).double().mean()) for k in ks}
    metrics["excluded_queries"] = int((~valid).sum())
    return metrics
