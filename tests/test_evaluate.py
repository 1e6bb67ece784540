import numpy as np
import pytest
import torch

from langdml_core.evaluate import knn, retrieval_metrics


def naive_recall(emb, labels, ks):
    """Plain-Python leave-one-out Recall@k; ties broken by lower index; singleton classes skipped."""
    n = len(labels)
    hits = {k: 0 for k in ks}
    valid = 0
    for q in range(n):
        if sum(1 for j in range(n) if labels[j] == labels[q]) < 2:
            continue
        valid += 1
        sims = [(-float(np.dot(emb[q], emb[j])), j) for j in range(n) if j != q]
        order = [j for _, j in sorted(sims)]
        for k in ks:
            hits[k] += any(labels[j] == labels[q] for j in order[:k])
    return {f"recall_at_{k}": hits[k] / valid for k in ks}, n - valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_matches_naive_reference_with_ties_duplicates_and_singletons(seed):
    rng = np.random.default_rng(seed)
    # Coarse, quantised vectors produce exact ties; copies produce exact duplicates.
    emb = rng.integers(-2, 3, size=(40, 4)).astype(np.float32)
    emb[5] = emb[6]
    emb[20] = emb[3]
    labels = rng.integers(0, 9, size=40)
    labels[39] = 100  # a singleton class: excluded from the queries
    ks = (1, 2, 4, 8)
    expected, excluded = naive_recall(emb, labels, ks)
    got = retrieval_metrics(emb, labels, ks=ks, chunk_size=7)
    assert got["excluded_queries"] == excluded >= 1
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_duplicate_of_the_query_counts_as_a_neighbour():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert retrieval_metrics(emb, labels, ks=(1,))["recall_at_1"] == 1.0
    assert knn(emb, 1).flatten().tolist() == [1, 0, 3, 2]


def test_ties_are_broken_by_lower_index():
    emb = torch.ones(5, 3)
    assert knn(emb, 4).tolist()[2] == [0, 1, 3, 4]
