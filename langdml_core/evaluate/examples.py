"""Retrieval examples: a few test queries and their nearest neighbours, right or wrong, as one image.

``train_trial`` writes ``retrieval_examples.jpg`` at the last epoch; Tune trials log it to their MLflow run.
The queries are fixed by position (evenly spaced over the split), so two trials of one sweep show the same
queries and their images can be compared side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from langdml_core.evaluate.engine import knn

EXAMPLES_FILE = "retrieval_examples.jpg"


def example_queries(n_items: int, n_queries: int = 6) -> list[int]:
    """Evenly spaced query indices over a split of ``n_items`` (class-sorted splits: several classes)."""
    return sorted({int(i) for i in np.linspace(0, n_items - 1, min(n_queries, n_items))})


def nearest_neighbours(embeddings: torch.Tensor, queries: list[int], k: int) -> list[list[int]]:
    """The ``k`` nearest other items of each query: :func:`~langdml_core.evaluate.engine.knn` (dot product,
    the query excluded by index, ties to the lower index), the evaluator's own neighbours."""
    return knn(embeddings, k, queries=queries).tolist()


def write_retrieval_examples(
    path: Path | str, embeddings: torch.Tensor, labels: torch.Tensor, split, k: int = 5, n_queries: int = 6
) -> Path:
    """One row per query: the query, then its ``k`` nearest neighbours framed green (same class) or red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries = example_queries(len(labels), n_queries)
    neighbours = nearest_neighbours(embeddings, queries, min(k, len(labels) - 1))
    columns = 1 + len(neighbours[0])
    fig, axes = plt.subplots(
        len(queries), columns, figsize=(1.6 * columns, 1.75 * len(queries)), squeeze=False
    )
    for row, (query, found) in enumerate(zip(queries, neighbours, strict=True)):
        for col, index in enumerate([query, *found]):
            ax = axes[row][col]
            ax.imshow(split.load(index).resize((96, 96)))
            ax.set_xticks([])
            ax.set_yticks([])
            right = labels[index] == labels[query]
            colour = "black" if col == 0 else ("tab:green" if right else "tab:red")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            text = split.class_texts[int(labels[index])]
            ax.set_title(("query: " if col == 0 else "") + text[:24], fontsize=6, color=colour)
    fig.suptitle(
        "test queries (left) and their nearest neighbours: green = same class, red = other", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80, pil_kwargs={"quality": 85})  # JPEG: cluttered images make PNGs of ~1 MB
    plt.close(fig)
    return Path(path)
