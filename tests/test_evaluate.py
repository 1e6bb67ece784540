"""Evaluation engine: every metric against slow, obviously-correct references (method.md section 8).

Inputs are made on LANGDML_TEST_DEVICE in LANGDML_TEST_DTYPE (the engine computes in float32 whatever
it is given; the data here are small integers or dyadic fractions, exact in either). The "numpy" engine
and the numpy matrix products run on CPU only, so those cases keep CPU tensors.
"""

import math

import numpy as np
import pytest
import torch
from conftest import TEST_DEVICE, TEST_DTYPE
from sklearn.metrics import normalized_mutual_info_score

from langdml_core import evaluate
from langdml_core.evaluate import (
    as_inputs,
    kmeans_torch,
    knn,
    knn_metrics_exact,
    knn_metrics_faiss,
    ranks,
    resolve_options,
    retrieval_metrics,
)


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


def naive_metrics(emb, labels, ks=(1, 2, 4, 8), cutoff=1000):
    """Every kNN metric, straight from the definitions: full ranking of all other items per query by
    (similarity descending, index ascending), the query excluded by index."""
    emb = np.asarray(emb, dtype=np.float64)
    labels = list(np.asarray(labels))
    n = len(labels)
    sims = emb @ emb.T  # exact for the small-integer / dyadic embeddings used here
    sums = {f"recall_at_{k}": 0.0 for k in ks} | {"r_precision": 0.0, "map_at_r": 0.0, "map_at_cut": 0.0}
    valid = 0
    for q in range(n):
        n_c = labels.count(labels[q])  # class size INCLUDING the query
        if n_c < 2:
            continue
        valid += 1
        order = sorted((j for j in range(n) if j != q), key=lambda j: (-sims[q, j], j))
        rel = [labels[j] == labels[q] for j in order]
        r = n_c - 1

        def precision(i, rel=rel):  # P(i), i 1-based
            return sum(rel[:i]) / i

        for k in ks:
            sums[f"recall_at_{k}"] += any(rel[:k])
        sums["r_precision"] += sum(rel[:r]) / r
        sums["map_at_r"] += sum(precision(i) for i in range(1, r + 1) if rel[i - 1]) / r
        sums["map_at_cut"] += sum(precision(i) for i in range(1, min(cutoff, n - 1) + 1) if rel[i - 1]) / n_c
    return {key: value / valid for key, value in sums.items()}, n - valid


def tie_heavy(seed, n=60, dim=4, classes=9):
    """Quantised vectors (exact float32 dot products, many exact ties), copies, and a singleton class."""
    rng = np.random.default_rng(seed)
    emb = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    emb[5] = emb[6]
    emb[20] = emb[3]
    emb[n - 2] = emb[0]
    labels = rng.integers(0, classes, size=n)
    labels[n - 1] = 100  # a singleton class: excluded from the queries
    return emb, labels


def exact_kwargs(cutoff):
    return {"ks": (1, 2, 4, 8), "cutoff": cutoff, "gemm": "auto"}


def tensors(emb, labels, engine="torch"):
    """(embeddings, labels) as tensors on the test device in the test dtype; on CPU for the numpy engine."""
    device = TEST_DEVICE if engine == "torch" else torch.device("cpu")
    emb = torch.as_tensor(np.asarray(emb), device=device).to(TEST_DTYPE)
    return emb, torch.as_tensor(np.asarray(labels), device=device)


def engine_inputs(emb, labels, engine="torch"):
    """:func:`tensors` checked as the engine takes them (float32, contiguous), as retrieval_metrics does."""
    return as_inputs(*tensors(emb, labels, engine), None)


# ---------------------------------------------------------------------------------------------- recall


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_matches_naive_reference_with_ties_duplicates_and_singletons(seed):
    emb, labels = tie_heavy(seed, n=40)
    ks = (1, 2, 4, 8)
    expected, excluded = naive_recall(emb, labels, ks)
    got = retrieval_metrics(*tensors(emb, labels), ks=ks, chunk_size=7, nmi=False)
    assert got["excluded_queries"] == excluded >= 1
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_duplicate_of_the_query_counts_as_a_neighbour():
    emb, labels = tensors([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], [0, 0, 1, 1])
    assert retrieval_metrics(emb, labels, ks=(1,), nmi=False)["recall_at_1"] == 1.0
    assert knn(emb, 1).flatten().tolist() == [1, 0, 3, 2]


def test_ties_are_broken_by_lower_index(device, dtype):
    emb = torch.ones(5, 3, device=device, dtype=dtype)
    assert knn(emb, 4).tolist()[2] == [0, 1, 3, 4]


# ------------------------------------------------------------------------------- every kNN metric, exact


@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_all_knn_metrics_match_naive_reference(seed, engine):
    emb, labels = tie_heavy(seed)
    expected, excluded = naive_metrics(emb, labels)
    got, k = knn_metrics_exact(
        *engine_inputs(emb, labels, engine), chunk_size=11, engine=engine, **exact_kwargs(1000)
    )
    assert k == len(labels) - 1  # k = max(1000, largest class) capped by N - 1
    expected["map_at_1000"] = expected.pop("map_at_cut")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    public = retrieval_metrics(*tensors(emb, labels), nmi=False)
    assert public["excluded_queries"] == excluded
    assert all(public[key] == pytest.approx(value, abs=1e-12) for key, value in expected.items())


@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("seed", [0, 1])
def test_small_cutoff_uses_sampled_thresholds_and_stays_exact(seed, engine):
    """k far below N: thresholds come from a column sample (stride > 1); ties and duplicates included."""
    rng = np.random.default_rng(seed)
    emb = rng.integers(-3, 4, size=(420, 6)).astype(np.float32) / 4  # dyadic: exact float32 products
    emb[10:20] = emb[0]
    labels = rng.integers(0, 30, size=420)
    labels[7] = 999
    cutoff = 10
    assert ranks.Columns(420, max(cutoff, np.bincount(labels).max()), "cpu").sample < 420
    expected, _ = naive_metrics(emb, labels, cutoff=cutoff)
    got, _ = knn_metrics_exact(
        *engine_inputs(emb, labels, engine), chunk_size=64, engine=engine, **exact_kwargs(cutoff)
    )
    expected[f"map_at_{cutoff}"] = expected.pop("map_at_cut")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_threshold_fallback_when_the_sample_overshoots(monkeypatch, engine):
    """Rows whose sampled threshold leaves fewer than k candidates are redone with the exact k-th value."""
    emb, labels = tie_heavy(5, n=80)
    monkeypatch.setattr(ranks, "threshold_np", lambda sims, cols: sims.max(axis=1))
    monkeypatch.setattr(ranks, "threshold_torch", lambda sims, cols: sims.amax(dim=1))
    expected, _ = naive_metrics(emb, labels, cutoff=9)
    got, _ = knn_metrics_exact(
        *engine_inputs(emb, labels, engine), chunk_size=13, engine=engine, **exact_kwargs(9)
    )
    expected["map_at_9"] = expected.pop("map_at_cut")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_large_class_uses_sorted_ranks(engine):
    """A class of 80 (> 64 same-class items per query) takes the sort-and-search rank path."""
    rng = np.random.default_rng(7)
    emb = rng.integers(-2, 3, size=(160, 5)).astype(np.float32)
    emb[:80] = 4 + rng.integers(-1, 2, size=(80, 5))  # a tight class: its queries rank ~79 of its items
    labels = np.concatenate([np.zeros(80, dtype=np.int64), rng.integers(1, 12, size=80)])
    expected, _ = naive_metrics(emb, labels, cutoff=50)
    got, k = knn_metrics_exact(
        *engine_inputs(emb, labels, engine), chunk_size=17, engine=engine, **exact_kwargs(50)
    )
    assert k == 80  # the largest class
    expected["map_at_50"] = expected.pop("map_at_cut")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("seed", [0, 1])
def test_knn_indices_match_a_full_stable_ranking(seed, engine):
    emb, _ = tie_heavy(seed, n=50)
    sims = emb.astype(np.float64) @ emb.T.astype(np.float64)
    for k in (1, 5, 49):
        expected = [
            sorted((j for j in range(50) if j != q), key=lambda j: (-sims[q, j], j))[:k] for q in range(50)
        ]
        assert knn(tensors(emb, [], engine)[0], k, chunk_size=9, engine=engine).tolist() == expected


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_knn_of_some_queries_is_their_rows_of_the_full_search(engine):
    emb, _ = tie_heavy(2, n=50)
    data = tensors(emb, [], engine)[0]
    full = knn(data, 7, chunk_size=9, engine=engine)
    queries = [49, 0, 13, 13, 30]  # any order, repeats allowed
    assert knn(data, 7, chunk_size=2, queries=queries, engine=engine).tolist() == full[queries].tolist()
    assert knn(data, 7, queries=[], engine=engine).shape == (0, 7)
    with pytest.raises(ValueError, match=r"queries must be row indices in \[0, 50\)"):
        knn(data, 7, queries=[50])


def test_negative_zero_ties_with_positive_zero():
    emb, _ = tensors([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 1.0]], [])
    # query 0: items 1, 2, 3 all have similarity 0 (one of them -0.0 * ...): order by index
    assert knn(emb, 3).tolist()[0] == [1, 2, 3]
    keys = ranks.keys_np(np.array([0.0, -0.0], dtype=np.float32), np.array([5, 5]))
    assert keys[0] == keys[1]


def test_map_at_1000_hand_worked_example():
    """Scalars 5, 4, 3, 2, 1 (every query ranks the others by index); labels A B A B A.

    query 0 (A, n_c=3): B A B A -> P(2)=1/2, P(4)=2/4 -> (1/2 + 1/2)/3 = 1/3;  map@R=(1/2)/2, R-prec 1/2
    query 1 (B, n_c=2): A A B A -> P(3)=1/3         -> (1/3)/2       = 1/6;  map@R=0,       R-prec 0
    query 2 (A):        A B B A -> P(1)=1, P(4)=1/2  -> (3/2)/3       = 1/2;  map@R=1/2,     R-prec 1/2
    query 3 (B):        A B A A -> P(2)=1/2          -> (1/2)/2       = 1/4;  map@R=0,       R-prec 0
    query 4 (A):        A B A B -> P(1)=1, P(3)=2/3  -> (5/3)/3       = 5/9;  map@R=1/2,     R-prec 1/2
    mAP@1000 = (1/3 + 1/6 + 1/2 + 1/4 + 5/9) / 5 = 13/36 (the Roth/paper divisor n_c includes the query)
    """
    emb = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 0])
    got = retrieval_metrics(*tensors(emb, labels), ks=(1, 2, 4), nmi=False)
    assert got["map_at_1000"] == pytest.approx(13 / 36, abs=1e-12)
    assert got["map_at_r"] == pytest.approx(1 / 4, abs=1e-12)
    assert got["r_precision"] == pytest.approx(0.3, abs=1e-12)
    assert (got["recall_at_1"], got["recall_at_2"], got["recall_at_4"]) == pytest.approx((0.4, 0.8, 1.0))


def test_perfect_retrieval_scores_r_over_r_plus_one_on_map_at_1000():
    emb = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # three classes of 4 identical vectors
    labels = np.repeat(np.arange(3), 4)
    got = retrieval_metrics(*tensors(emb, labels), nmi=False)
    assert got["map_at_r"] == got["r_precision"] == got["recall_at_1"] == 1.0
    assert got["map_at_1000"] == pytest.approx(3 / 4, abs=1e-12)


# -------------------------------------------------------------------------- pytorch-metric-learning


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pytorch_metric_learning_on_tie_free_data(seed):
    from pytorch_metric_learning.distances import DotProductSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 25, size=300)
    labels[:3] = [900, 901, 902]  # singletons: both exclude them
    centres = rng.normal(size=(1000, 16))
    emb = centres[labels] + rng.normal(scale=1.5, size=(300, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(DotProductSimilarity()),
    )
    theirs = calc.get_accuracy(torch.from_numpy(emb), torch.from_numpy(labels))
    ours = retrieval_metrics(emb, labels, nmi=False, device=TEST_DEVICE)
    assert ours["excluded_queries"] == 3
    assert ours["recall_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-6)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)


# ------------------------------------------------------------------------------------ faiss backend


@pytest.mark.parametrize("seed", [0, 1])
def test_faiss_knn_backend_is_exact_with_ties(seed):
    pytest.importorskip("faiss")
    emb, labels = tie_heavy(seed, n=70)
    expected, _ = naive_metrics(emb, labels, cutoff=12)
    got, k = knn_metrics_faiss(*engine_inputs(emb, labels), (1, 2, 4, 8), 12, 16)
    assert k == max(12, np.bincount(labels).max())
    expected["map_at_12"] = expected.pop("map_at_cut")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    public = retrieval_metrics(*tensors(emb, labels), nmi=False, knn_backend="faiss")
    assert public["map_at_r"] == pytest.approx(naive_metrics(emb, labels)[0]["map_at_r"], abs=1e-12)


class TiesLastIndex:
    """A stand-in for faiss.IndexFlatIP that returns tied items highest index first (faiss promises no
    order among ties), so only the re-search at the boundary keeps the faiss backend exact."""

    def __init__(self, d):
        self.data = None

    def add(self, x):
        self.data = np.asarray(x, dtype=np.float32)

    def search(self, q, k):
        sims = np.asarray(q, dtype=np.float64) @ self.data.T.astype(np.float64)
        index = np.broadcast_to(-np.arange(len(self.data)), sims.shape)
        order = np.lexsort((index, -sims), axis=-1)[:, :k]
        return np.take_along_axis(sims, order, axis=1).astype(np.float32), order.astype(np.int64)


def test_faiss_backend_stays_exact_whatever_the_order_among_ties(monkeypatch):
    faiss = pytest.importorskip("faiss")
    monkeypatch.setattr(faiss, "IndexFlatIP", TiesLastIndex)
    rng = np.random.default_rng(3)
    emb = rng.integers(0, 2, size=(90, 2)).astype(np.float32)  # similarities 0, 1 or 2: ties everywhere
    labels = rng.integers(0, 9, size=90)
    expected, _ = naive_metrics(emb, labels, cutoff=10)
    got, _ = knn_metrics_faiss(*engine_inputs(emb, labels), (1, 2, 4, 8), 10, 32)
    expected["map_at_10"] = expected.pop("map_at_cut")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


# ---------------------------------------------------------------------------------------- k-means, NMI


SCREENS = ("fp32", "bf16") if TEST_DEVICE.type == "cpu" else ("fp32",)


def naive_nearest(x, centroids):
    """Nearest centroid of each row from the definition: largest x.c - |c|^2 / 2 in float64 (exact for the
    small-integer data below), ties to the lower index."""
    x, c = np.asarray(x, dtype=np.float64), np.asarray(centroids, dtype=np.float64)
    scores = [[float(np.dot(p, q)) - float(np.dot(q, q)) / 2 for q in c] for p in x]
    return [min(range(len(c)), key=lambda j, row=row: (-row[j], j)) for row in scores]


def screen_cases():
    """(name, x, centroids): ties and duplicates, large and tiny norms, near ties, centroids that are
    points (many near ties in bf16), and all-negative scores (the bf16 screen's exact fallback)."""
    rng = np.random.default_rng(0)
    ints = rng.integers(-2, 3, size=(120, 6)).astype(np.float32)
    yield "integers, duplicate centroids", ints, np.concatenate([ints[:15], ints[:5]])
    wide = rng.normal(size=(150, 16)).astype(np.float32)
    yield "large norms", wide * 100, wide[rng.permutation(150)[:20]] * 100
    yield "tiny norms", wide * 1e-3, wide[:25] * 1e-3
    unit = wide / np.linalg.norm(wide, axis=1, keepdims=True)
    yield "centroids are points, near ties", unit, np.concatenate([unit[:30], unit[:30] + 1e-4])
    positive = np.abs(unit)
    yield "all scores negative", positive, -positive[:12]


@pytest.mark.parametrize("screen", SCREENS)
def test_screened_assignment_is_the_exact_nearest_centroid(screen):
    from langdml_core.evaluate.screen import Assigner

    for name, x, centroids in screen_cases():
        expected = naive_nearest(x, centroids)
        layouts = [(7, "sequential", "auto"), (7, "pipelined", "auto"), (7, "workers", "auto")]
        layouts += [(4096, "sequential", "auto"), (7, "sequential", "torch")]  # torch: as on GPU
        for rows, layout, gemm in layouts:
            if screen == "bf16" and gemm == "torch":
                continue
            assign = Assigner(tensors(x, [])[0], screen, gemm=gemm, rows=rows, layout=layout)
            got = assign(tensors(centroids, [])[0])
            assert got.tolist() == expected, (name, rows, layout, gemm)
            if screen == "bf16":  # near ties are scored exactly; so is every score of a row without one > 0
                assert assign.exact_pairs > 0
                if name == "all scores negative":
                    assert assign.exact_pairs >= x.shape[0] * centroids.shape[0]


def test_sparse_nonzero_is_nonzero():
    from langdml_core.evaluate.screen import sparse_nonzero

    rng = np.random.default_rng(2)
    for shape in [(7, 13), (3, 8), (1, 1), (40, 301), (5, 3)]:
        for p in (0.0, 0.01, 0.5, 1.0):
            mask = rng.random(shape) < p
            got, expected = sparse_nonzero(mask), np.nonzero(mask)
            assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)), (shape, p)


def test_bf16_screen_error_stays_within_its_bound():
    """The proven bound, without its safety factor, holds for every score near a row's best."""
    from langdml_core.evaluate.screen import SAFETY, Assigner

    rng = np.random.default_rng(1)
    for scale in (1.0, 37.0):
        x = rng.normal(size=(600, 48)).astype(np.float32)
        x = x / np.linalg.norm(x, axis=1, keepdims=True) * scale
        centroids = torch.from_numpy(
            x[:200] + rng.normal(scale=0.3 * scale / 7, size=(200, 48)).astype(np.float32)
        )
        assign = Assigner(torch.from_numpy(x), "bf16")
        c_aug = assign.prepare(centroids)
        screened = torch.mm(assign.x_aug, c_aug.T).double().numpy()
        c64 = centroids.double().numpy()
        exact = x.astype(np.float64) @ c64.T - 0.5 * (c64 * c64).sum(1) + assign.offset
        best = screened.max(axis=1)
        bound = assign.bound(assign.x_norm.numpy(), best) / SAFETY
        near = screened >= (best - 2 * SAFETY * bound)[:, None]
        assert near.sum() > 600 and (np.abs(screened - exact) <= bound[:, None])[near].all()


def naive_kmeans(x, k, iterations, seed):
    """Lloyd's k-means in float64 with the same initial points and empty-cluster rule as kmeans_torch."""
    x = np.asarray(x, dtype=np.float64)
    init = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:k].numpy()
    centroids = x[init].copy()

    def nearest(c):
        return np.array([int(np.argmin([np.sum((p - ci) ** 2) for ci in c])) for p in x])

    for _ in range(iterations):
        assignment = nearest(centroids)
        for j in range(k):
            if np.any(assignment == j):
                centroids[j] = x[assignment == j].mean(axis=0)
    return nearest(centroids), centroids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_kmeans_matches_naive_lloyd(seed):
    """Same result as every iteration of plain Lloyd, although it stops at the first fixed point."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(5, 3)) * 4)[rng.integers(0, 5, size=40)] + rng.normal(size=(40, 3))
    x = x.astype(np.float32)
    # gemm numpy: numpy's BLAS on CPU (torch off CPU); the bf16 screen runs on CPU only
    for gemm, screen in [("numpy", "fp32"), ("torch", "fp32"), *([("auto", "bf16")] * bool(SCREENS[1:]))]:
        result = kmeans_torch(tensors(x, [])[0], 6, iterations=12, seed=seed, gemm=gemm, screen=screen)
        expected, expected_centroids = naive_kmeans(x, 6, 12, seed)
        assert result.assignment.tolist() == expected.tolist()
        np.testing.assert_allclose(result.centroids.cpu().numpy(), expected_centroids, atol=1e-5)
        assert result.iterations < 12  # it reached a fixed point and stopped there
    short = kmeans_torch(tensors(x, [])[0], 6, iterations=1, seed=seed)
    assert short.iterations == 1
    assert short.assignment.tolist() == naive_kmeans(x, 6, 1, seed)[0].tolist()


def test_nmi_options_are_recorded_and_used():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 10)
    emb = (rng.normal(size=(6, 8)) * 3)[labels] + rng.normal(size=(60, 8))
    emb = emb.astype(np.float32)
    got = retrieval_metrics(*tensors(emb, labels), nmi_backend="torch", nmi_seed=3, nmi_iterations=5)
    assert (got["nmi_k"], got["nmi_iterations"], got["nmi_seed"], got["nmi_faiss"]) == (6, 5, 3, 0)
    assert 1 <= got["nmi_iterations_run"] <= 5
    assignment = kmeans_torch(tensors(emb, [])[0], 6, iterations=5, seed=3).assignment.cpu()
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(labels, assignment.numpy()), abs=1e-12)
    other = retrieval_metrics(*tensors(emb, labels), nmi_backend="torch", nmi_k=12)
    assert other["nmi_k"] == 12 and other["nmi"] != got["nmi"]
    assert all(isinstance(value, (int, float)) for value in got.values())  # train.py logs numbers
    options = resolve_options(labels, nmi_k=12, nmi_backend="torch")
    assert options["nmi_k"] == 12 and options["nmi_backend"] == "torch" and options["knn_backend"] == "exact"
    assert resolve_options(labels)["nmi_backend"] == "torch"  # chosen by measurement (issue 14)
    assert retrieval_metrics(*tensors(emb, labels), nmi_iterations=5, nmi_seed=3) == got  # the default
    with pytest.raises(TypeError, match="unknown evaluation option"):
        retrieval_metrics(emb, labels, nmi_kk=3)


def test_faiss_kmeans_reproduces_pytorch_metric_learning_nmi():
    pytest.importorskip("faiss")
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(8), 12)
    emb = ((rng.normal(size=(8, 6)) * 2)[labels] + rng.normal(size=(96, 6))).astype(np.float32)
    theirs = AccuracyCalculator(include=("NMI",), device=torch.device("cpu")).get_accuracy(
        torch.from_numpy(emb), torch.from_numpy(labels)
    )["NMI"]
    ours = retrieval_metrics(*tensors(emb, labels), nmi_backend="faiss", nmi_seed=1234)  # faiss's default
    assert ours["nmi_faiss"] == 1
    assert ours["nmi"] == pytest.approx(theirs, abs=1e-12)


# ----------------------------------------------------------------------------------- inputs, memory


def test_inputs_numpy_or_torch_and_labels_int64():
    emb, labels = tie_heavy(0, n=30)
    a = retrieval_metrics(emb, labels.astype(np.int32), nmi=False)
    b = retrieval_metrics(*tensors(emb, labels), nmi=False)
    assert a == b
    assert all(math.isfinite(v) for v in a.values())
    with pytest.raises(TypeError):
        retrieval_metrics(emb, labels.astype(np.float32), nmi=False)
    with pytest.raises(ValueError):
        retrieval_metrics(np.full((3, 2), np.nan, dtype=np.float32), [0, 0, 1], nmi=False)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_chunk_bounds_similarity_memory(monkeypatch, engine):
    """No similarity block larger than chunk x N is ever computed."""
    shapes = []
    for name in ("candidates_np", "candidates_torch"):
        original = getattr(ranks, name)

        def spy(sims, *args, _original=original, **kwargs):
            shapes.append(tuple(sims.shape))
            return _original(sims, *args, **kwargs)

        monkeypatch.setattr(ranks, name, spy)
    emb, labels = tie_heavy(2, n=50)
    knn_metrics_exact(*engine_inputs(emb, labels, engine), chunk_size=8, engine=engine, **exact_kwargs(1000))
    assert sorted(shapes) == sorted([(8, 50)] * 6 + [(2, 50)])


def test_provenance_keys_are_returned_as_numbers():
    emb, labels = tie_heavy(1, n=40)
    got = retrieval_metrics(*tensors(emb, labels), nmi_backend="torch")
    assert set(evaluate.PROVENANCE_KEYS) <= set(got)
    assert {"recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "r_precision", "map_at_r"} <= set(got)
    assert {"map_at_1000", "nmi"} <= set(got)
    assert all(isinstance(got[key], int) for key in evaluate.PROVENANCE_KEYS)


def test_bench_eval_command_runs_small(capsys):
    import argparse

    from langdml_core.bench import add_bench_parser

    pytest.importorskip("faiss")
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["bench", "eval", "--n", "400", "--dim", "16", "--classes", "60", "--repeats", "1"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "DISAGREE" not in out and "langdml / AccuracyCalculator" in out and "peak memory" in out


# ---- eval.precision and eval.nmi_clusters --------------------------------------------------------------


def test_embed_is_exact_fp32_by_default_and_bf16_only_when_asked(device):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 16)
    ).to(device)
    images, labels = torch.randn(20, 3, 8, 8), torch.arange(20) % 4
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=7)
    with torch.no_grad():
        reference = torch.cat([model(x.to(device)) for x, _ in loader]).cpu()
    fp32 = ("fp32", "auto") if device.type == "cpu" else ("fp32",)  # auto: bf16 on CUDA
    for precision in fp32:
        emb, lab = evaluate.embed(model, loader, device, precision=precision)
        assert torch.equal(emb, reference) and torch.equal(lab, labels)
    assert torch.equal(evaluate.embed(model, loader, device)[0], reference)  # fp32 is the default
    for precision in ("bf16", "auto") if device.type == "cuda" else ("bf16",):
        bf16, _ = evaluate.embed(model, loader, device, precision=precision)
        assert bf16.dtype == torch.float32 and bf16.device.type == "cpu" and not torch.equal(bf16, reference)
        torch.testing.assert_close(bf16, reference, rtol=0.05, atol=0.05)  # the same model, rounded
    with pytest.raises(ValueError, match="precision='fp16'"):
        evaluate.embed(model, loader, device, precision="fp16")


def test_nmi_clusters_k_follows_the_option():
    assert evaluate.nmi_clusters_k("test", 98, 8131) is None  # retrieval_metrics: the split's own classes
    assert evaluate.nmi_clusters_k("train", 98, 8131) == 98  # the release: training classes
    assert evaluate.nmi_clusters_k("train", 98, 50) == 50  # k-means needs k <= N
    with pytest.raises(ValueError, match="'test' or 'train'"):
        evaluate.nmi_clusters_k("val", 98, 8131)


# ---- the package's boundary -------------------------------------------------------------------------------


def test_public_names_resolve_and_nothing_outside_imports_a_private_one():
    import ast
    from pathlib import Path

    assert all(hasattr(evaluate, name) for name in evaluate.__all__)
    assert not [name for name in evaluate.__all__ if name.startswith("_")]
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in [*(root / "langdml_core").rglob("*.py"), *(root / "tests").rglob("*.py")]:
        relative = path.relative_to(root).as_posix()
        if relative.startswith("langdml_core/evaluate/"):
            continue
        if relative.startswith("langdml_core/bench"):  # until bench imports the public names (issue 14)
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("langdml_core.evaluate"):
                offenders += [f"{relative}: {a.name}" for a in node.names if a.name.startswith("_")]
            private = isinstance(node, ast.Attribute) and node.attr.startswith("_") and node.attr[1] != "_"
            if private and isinstance(node.value, ast.Name) and node.value.id in ("evaluate", "ranks"):
                offenders.append(f"{relative}: {node.value.id}.{node.attr}")
    assert offenders == []
