"""Each registered loss against a naive NumPy reference (values and gradients), plus the loss interface.

The references are plain-Python loops written from the formulas and from pml's reducers, never importing
pytorch_metric_learning. pml normalises embeddings inside its distances, so the references do too; the
gradient is then checked by central differences of the reference on the raw inputs.

Tensors live on LANGDML_TEST_DEVICE. Comparisons with the references and with central differences stay in
float64 whatever LANGDML_TEST_DTYPE (they are made at 1e-6 to 1e-12); the other tests take the dtype from
the ``dtype`` fixture, except the output contract, which runs float32 as training does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import TEST_DEVICE

from langdml_core.config import ConfigError
from langdml_core.losses import LOSSES, DMLLoss, build_loss
from langdml_core.registry import UnknownNameError

NUM_CLASSES, EMBED_DIM, FEATURE_DIM = 6, 8, 5
BATCH_LABELS = [0, 2, 3, 5]  # 4 of the 6 classes present: proxy-anchor's divisor must count only these

PAPER_HPARAMS: dict[str, dict] = {
    # method.md sections 6 and 11 (the release, commit b07ac5b): alpha 2, beta 40, base 0.5, margin 0.1.
    "multisimilarity": {
        "formulation": "release", "alpha": 2.0, "beta": 40.0, "base": 0.5, "epsilon": 0.1,
        "distance": "cosine", "miner": "multisimilarity (inside the loss)", "reducer": "softplus of batch means",
    },
    # Margin 0.2, class-wise beta 1.2 at lr 5e-4, lower cut-off 0.5, NO upper cut-off, no regulariser.
    "margin": {
        "formulation": "release", "margin": 0.2, "beta": 1.2, "nu": 0.0, "beta_lr": 5e-4, "cutoff": 0.5,
        "nonzero_loss_cutoff": 0.0, "count": "terms", "distance": "euclidean",
        "miner": "distance_weighted_release", "reducer": "nonzero_terms", "classwise_beta": True,
    },
    "proxy_anchor": {
        "alpha": 32.0, "margin": 0.1, "proxy_lr_mult": 100.0,
        "distance": "cosine", "miner": "none", "reducer": "divisor",
    },
    "arcface": {
        "margin": 28.6, "scale": 64.0, "proxy_lr_mult": 50.0,
        "distance": "cosine", "miner": "none", "reducer": "mean",
    },
    "normalized_softmax": {
        "temperature": 0.05, "proxy_lr_mult": 1.0,
        "distance": "dot_product_normalized", "miner": "none", "reducer": "mean",
    },
    "triplet": {
        "margin": 0.2, "type_of_triplets": "semihard",
        "distance": "euclidean", "miner": "triplet_margin", "reducer": "avg_non_zero",
    },
    "contrastive": {
        "pos_margin": 0.0, "neg_margin": 1.0,
        "distance": "euclidean", "miner": "none", "reducer": "avg_non_zero",
    },
    # Heads to 1024/1536/2048 as Linear(F, t)-ReLU-Linear(t, t) on avg+max pooled features, T 1, similarity
    # distillation 0, feature distillation from step 0 (its weight is per cell: langdml_core.paper).
    "s2sd": {
        "base": "multisimilarity", "base_kwargs": {}, "target_dims": [1024, 1536, 2048], "temperature": 1.0,
        "sim_distill_weight": 0.0, "feat_distill_weight": 50.0, "feat_distill_delay": 0, "pool_aggr": True,
        "head_hidden": "target", "combine": "mean", "kl": "KL(P_head || P_src) * T^2, head side detached",
    },
}  # fmt: skip


# ---- fixtures ------------------------------------------------------------------------------------------
def make_batch(seed: int = 0, spread: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """4 classes x 3 samples around random class centres, L2-normalised float64."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(BATCH_LABELS), 3)
    centres = rng.normal(size=(NUM_CLASSES, EMBED_DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + spread * rng.normal(size=(len(labels), EMBED_DIM)) / math.sqrt(EMBED_DIM)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def make_loss(
    name: str, kwargs: dict | None = None, seed: int = 0, dtype: torch.dtype = torch.float64
) -> DMLLoss:
    """A loss on the test device, float64 unless asked (the reference comparisons need float64)."""
    torch.manual_seed(seed)
    loss = build_loss(name, NUM_CLASSES, EMBED_DIM, kwargs, feature_dim=FEATURE_DIM)
    loss = loss.to(TEST_DEVICE, dtype)
    if name == "margin":  # distinct class-wise betas, so indexing beta by the anchor's class is checked
        with torch.no_grad():
            loss.beta.copy_(1.2 + 0.1 * torch.randn(NUM_CLASSES, dtype=torch.float64))  # onto its device
    return loss


# ---- naive references ------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cos(a: np.ndarray, b: np.ndarray) -> list[list[float]]:
    a, b = _unit(a), _unit(b)
    return [
        [float(sum(a[i, k] * b[j, k] for k in range(a.shape[1]))) for j in range(len(b))]
        for i in range(len(a))
    ]


def _euclid(x: np.ndarray) -> list[list[float]]:
    x = _unit(x)
    n = len(x)
    return [
        [math.sqrt(sum((x[i, k] - x[j, k]) ** 2 for k in range(x.shape[1]))) for j in range(n)]
        for i in range(n)
    ]


def _dot(x: np.ndarray) -> list[list[float]]:
    """Plain dot products: the release's losses take the model's L2-normalised output as it is."""
    return [
        [float(sum(a * b for a, b in zip(x[i], x[j], strict=True))) for j in range(len(x))]
        for i in range(len(x))
    ]


def _euclid_release(x: np.ndarray) -> list[list[float]]:
    """sqrt(||a - b||^2 + 1e-8), no normalisation (the release's margin loss)."""
    n = len(x)
    return [
        [math.sqrt(sum((x[i, k] - x[j, k]) ** 2 for k in range(x.shape[1])) + 1e-8) for j in range(n)]
        for i in range(n)
    ]


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def _log1p_sum_exp(values: list[float]) -> float:
    """log(1 + sum(exp(v))), stable."""
    m = max([0.0, *values])
    return m + math.log(math.exp(-m) + sum(math.exp(v - m) for v in values))


def _cross_entropy(logits: list[float], target: int) -> float:
    m = max(logits)
    return m + math.log(sum(math.exp(v - m) for v in logits)) - logits[target]


def _avg_non_zero(values: list[float]) -> float:
    """pml AvgNonZeroReducer: mean over the strictly positive terms, 0 if there are none."""
    kept = [v for v in values if v > 0]
    return sum(kept) / len(kept) if kept else 0.0


def ms_mined_pairs(s: list[list[float]], y: np.ndarray, eps: float) -> tuple[list, list]:
    """MS mining: positives less similar than the hardest negative + eps, negatives vice versa."""
    pos_pairs, neg_pairs = [], []
    for i in range(len(y)):
        pos = [j for j in range(len(y)) if j != i and y[j] == y[i]]
        neg = [j for j in range(len(y)) if y[j] != y[i]]
        if not pos or not neg:
            continue
        max_neg, min_pos = max(s[i][j] for j in neg), min(s[i][j] for j in pos)
        pos_pairs += [(i, j) for j in pos if s[i][j] - eps < max_neg]
        neg_pairs += [(i, j) for j in neg if s[i][j] + eps > min_pos]
    return pos_pairs, neg_pairs


def semihard_triplets(d: list[list[float]], y: np.ndarray, margin: float) -> list[tuple[int, int, int]]:
    """pml TripletMarginMiner "semihard": 0 < d(a,n) - d(a,p) <= margin."""
    n = len(y)
    return [
        (a, p, q)
        for a in range(n)
        for p in range(n)
        if p != a and y[p] == y[a]
        for q in range(n)
        if y[q] != y[a] and 0 < d[a][q] - d[a][p] <= margin
    ]


def ref_multisimilarity(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    s = _cos(x, x)
    pos_pairs, neg_pairs = ms_mined_pairs(s, y, h["epsilon"])
    total = 0.0
    for i in range(len(y)):  # MeanReducer over all B anchors, anchors without mined pairs count as 0
        pos = [-h["alpha"] * (s[i][j] - h["base"]) for a, j in pos_pairs if a == i]
        neg = [h["beta"] * (s[i][j] - h["base"]) for a, j in neg_pairs if a == i]
        total += (_log1p_sum_exp(pos) / h["alpha"] if pos else 0.0) + (
            _log1p_sum_exp(neg) / h["beta"] if neg else 0.0
        )
    return total / len(y)


def ref_multisimilarity_release(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    """method.md section 11: softplus(mean_i pos_i) / alpha + softplus(mean_i neg_i) / beta over all anchors."""
    s = _dot(x)
    pos_pairs, neg_pairs = ms_mined_pairs(s, y, h["epsilon"])
    pos_sum, neg_sum = 0.0, 0.0
    for i in range(len(y)):
        pos = [-h["alpha"] * (s[i][j] - h["base"]) for a, j in pos_pairs if a == i]
        neg = [h["beta"] * (s[i][j] - h["base"]) for a, j in neg_pairs if a == i]
        pos_sum += _log1p_sum_exp(pos) if pos else 0.0
        neg_sum += _log1p_sum_exp(neg) if neg else 0.0
    return _softplus(pos_sum / len(y)) / h["alpha"] + _softplus(neg_sum / len(y)) / h["beta"]


def ref_margin_release(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    """method.md section 11: hinge terms of the mined triplets over the number of non-zero terms
    (count="terms"), or over the number of triplets with a non-zero term (count="triplets": the release's
    code, whose bool + bool is a logical OR)."""
    d, beta = _euclid_release(x), ctx["beta"]
    triplets = []
    for a, p, n in zip(*ctx["mined"], strict=True):
        b = beta[y[a]]
        triplets.append((max(0.0, d[a][p] - b + h["margin"]), max(0.0, b - d[a][n] + h["margin"])))
    total = sum(pos + neg for pos, neg in triplets)
    if h["count"] == "triplets":
        nonzero = sum(pos > 0 or neg > 0 for pos, neg in triplets)
    else:
        nonzero = sum(int(pos > 0) + int(neg > 0) for pos, neg in triplets)  # ints: numpy bools would OR
    return total / nonzero if nonzero else total


def ref_margin(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    d, beta = _euclid(x), ctx["beta"]
    pos_terms, neg_terms, reg = [], [], 0.0
    for a, p, n in zip(*ctx["mined"], strict=True):
        b = beta[y[a]]
        pos_terms.append(max(0.0, d[a][p] - b + h["margin"]))
        neg_terms.append(max(0.0, b - d[a][n] + h["margin"]))
        reg += h["nu"] * b
    divisor = sum(v > 0 for v in pos_terms) + sum(v > 0 for v in neg_terms)  # pml DivisorReducer
    return (sum(pos_terms) + sum(neg_terms) + reg) / divisor if divisor else 0.0


def ref_proxy_anchor(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    s = _cos(x, ctx["proxies"])
    alpha, delta = h["alpha"], h["margin"]
    pos_sum, neg_sum, with_pos = 0.0, 0.0, 0
    for c in range(NUM_CLASSES):
        pos = [-alpha * (s[i][c] - delta) for i in range(len(y)) if y[i] == c]
        neg = [alpha * (s[i][c] + delta) for i in range(len(y)) if y[i] != c]
        if pos:
            pos_sum += _log1p_sum_exp(pos)
            with_pos += 1
        if neg:
            neg_sum += _log1p_sum_exp(neg)
    return pos_sum / with_pos + neg_sum / NUM_CLASSES  # DivisorReducer: proxies with positives / all proxies


def ref_arcface(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    s = _cos(x, ctx["weight"].T)
    m = math.radians(h["margin"])
    total = 0.0
    for i in range(len(y)):
        logits = list(s[i])
        theta = math.acos(min(1.0, max(-1.0, logits[y[i]])))
        logits[y[i]] = math.cos(theta + m) if theta <= math.pi - m else math.cos(theta) - m * math.sin(m)
        total += _cross_entropy([h["scale"] * v for v in logits], y[i])
    return total / len(y)


def ref_normalized_softmax(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    s = _cos(x, ctx["weight"].T)
    return sum(_cross_entropy([v / h["temperature"] for v in s[i]], y[i]) for i in range(len(y))) / len(y)


def ref_triplet(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    d = _euclid(x)
    return _avg_non_zero(
        [max(0.0, d[a][p] - d[a][n] + h["margin"]) for a, p, n in semihard_triplets(d, y, h["margin"])]
    )


def ref_contrastive(x: np.ndarray, y: np.ndarray, h: dict, ctx: dict) -> float:
    d, n = _euclid(x), len(y)
    pos = [max(0.0, d[i][j] - h["pos_margin"]) for i in range(n) for j in range(n) if i != j and y[i] == y[j]]
    neg = [max(0.0, h["neg_margin"] - d[i][j]) for i in range(n) for j in range(n) if y[i] != y[j]]
    return _avg_non_zero(pos) + _avg_non_zero(neg)  # one AvgNonZeroReducer per sub-loss, summed


Reference = Callable[[np.ndarray, np.ndarray, dict, dict], float]
REFERENCES: dict[str, Reference] = {
    "multisimilarity": ref_multisimilarity_release,
    "margin": ref_margin_release,
    "proxy_anchor": ref_proxy_anchor,
    "arcface": ref_arcface,
    "normalized_softmax": ref_normalized_softmax,
    "triplet": ref_triplet,
    "contrastive": ref_contrastive,
    # S2SD's dml_loss is half its base loss ((L_src + mean L_t) / 2); the rest: test_s2sd_* below.
    "s2sd": lambda x, y, h, ctx: (
        0.5 * ref_multisimilarity_release(x, y, PAPER_HPARAMS["multisimilarity"], ctx)
    ),
}
# The other formulations, as named options: (loss, kwargs, reference).
VARIANTS: dict[str, tuple[str, dict, Reference]] = {
    **{name: (name, {}, ref) for name, ref in REFERENCES.items()},
    "multisimilarity-pml": ("multisimilarity", {"formulation": "pml"}, ref_multisimilarity),
    "margin-pml": ("margin", {"formulation": "pml", "nonzero_loss_cutoff": 1.4}, ref_margin),
}


def reference_context(loss: DMLLoss, emb: torch.Tensor, labels: torch.Tensor) -> dict:
    """Loss-owned arrays and, for random miners only, the mined indices (same RNG state as forward)."""
    ctx: dict = {}
    for attr in ("beta", "proxies", "weight"):
        if hasattr(loss, attr):
            ctx[attr] = getattr(loss, attr).detach().cpu().numpy().copy()
    if loss.hparams.get("miner") in ("distance_weighted", "distance_weighted_release"):
        torch.manual_seed(123)
        ctx["mined"] = [t.cpu().numpy() for t in loss.mine(emb, labels)]
    return ctx


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += step
        down[idx] -= step
        grad[idx] = (f(up) - f(down)) / (2 * step)
    return grad


# ---- tests -----------------------------------------------------------------------------------------------
def test_fixture_exercises_miners_and_reducers() -> None:
    """The tiny batch must make mining and AvgNonZero filtering non-trivial, else the comparison proves little."""
    x, y = make_batch()
    s, d = _cos(x, x), _euclid(x)
    pos_pairs, neg_pairs = ms_mined_pairs(s, y, 0.1)
    assert 0 < len(pos_pairs) < 12 * 2 and 0 < len(neg_pairs) < 12 * 9
    assert 0 < len(semihard_triplets(d, y, 0.2)) < 12 * 2 * 9
    neg_terms = [1.0 - d[i][j] for i in range(12) for j in range(12) if y[i] != y[j]]
    assert any(v > 0 for v in neg_terms) and any(v <= 0 for v in neg_terms)


def test_every_loss_has_a_reference() -> None:
    assert sorted(REFERENCES) == sorted(LOSSES.names())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_matches_numpy_reference(variant: str, device: torch.device) -> None:
    name, kwargs, ref = VARIANTS[variant]
    loss = make_loss(name, kwargs)  # float64: compared with central differences
    x_np, y_np = make_batch()
    emb = torch.tensor(x_np, requires_grad=True, device=device)
    labels = torch.tensor(y_np, device=device)
    ctx = reference_context(loss, emb.detach(), labels)
    features = torch.randn(len(labels), FEATURE_DIM, 2, 2, dtype=torch.float64, device=device)  # S2SD only
    torch.manual_seed(123)  # the same RNG state the reference context mined with
    out = loss(emb, labels, features=features)["dml_loss"]
    out.backward()

    expected = ref(x_np, y_np, loss.hparams, ctx)
    assert expected > 0
    assert out.item() == pytest.approx(expected, abs=1e-5, rel=1e-7)
    grad = numeric_grad(lambda x: ref(x, y_np, loss.hparams, ctx), x_np)
    np.testing.assert_allclose(emb.grad.cpu().numpy(), grad, atol=1e-6, rtol=1e-4)


def test_explicit_indices_match_internal_mining(device: torch.device, dtype: torch.dtype) -> None:
    loss = make_loss("margin", dtype=dtype)
    x_np, y_np = make_batch()
    x, y = torch.tensor(x_np, dtype=dtype, device=device), torch.tensor(y_np, device=device)
    torch.manual_seed(5)
    internal = loss(x, y)["dml_loss"]
    torch.manual_seed(5)
    explicit = loss(x, y, indices=loss.mine(x, y))["dml_loss"]
    assert internal.item() == explicit.item()


def _distance_weights(x: np.ndarray, y: np.ndarray, cutoff: float, nonzero_cutoff: float) -> np.ndarray:
    """Sampling distribution of Wu et al. (2017): q(d)^-1 with d clamped at cutoff, zero beyond nonzero_cutoff."""
    n, dim = x.shape
    d = np.array(_euclid(x))
    w = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if y[i] != y[j] and d[i, j] < nonzero_cutoff:
                dc = max(d[i, j], cutoff)
                w[i, j] = math.exp((2 - dim) * math.log(dc) - (dim - 3) / 2 * math.log(1 - dc * dc / 4))
        if w[i].sum() > 0:  # an anchor whose negatives are all beyond nonzero_cutoff is never sampled
            w[i] /= w[i].sum()
    return w


def test_pml_distance_weighted_miner_properties(device: torch.device, dtype: torch.dtype) -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 2)
    x = rng.normal(size=(8, EMBED_DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    # Two negatives of anchor 0 nearer than the 0.5 cut-off: clamped, so they must be drawn equally often.
    for j, dist in ((2, 0.2), (3, 0.4)):
        v = rng.normal(size=EMBED_DIM)
        v -= (v @ x[0]) * x[0]
        v /= np.linalg.norm(v)
        angle = 2 * math.asin(dist / 2)
        x[j] = math.cos(angle) * x[0] + math.sin(angle) * v
    d = np.array(_euclid(x))
    assert d[0, 2] == pytest.approx(0.2) and d[0, 3] == pytest.approx(0.4)

    loss = build_loss("margin", 4, EMBED_DIM, {"formulation": "pml", "nonzero_loss_cutoff": 1.4})
    loss = loss.to(device, dtype)
    emb, labels = torch.tensor(x, dtype=dtype, device=device), torch.tensor(y, device=device)
    torch.manual_seed(0)
    counts = np.zeros((8, 8))
    for _ in range(400):
        a, p, n = (t.cpu().numpy() for t in loss.mine(emb, labels))
        assert len(a) == len(p) == len(n) > 0
        assert np.all(y[a] == y[p]) and np.all(a != p) and np.all(y[n] != y[a])
        assert np.all(d[a, n] < loss.hparams["nonzero_loss_cutoff"])
        np.add.at(counts, (a, n), 1)
    expected = _distance_weights(x, y, loss.hparams["cutoff"], loss.hparams["nonzero_loss_cutoff"])
    sampled = expected.sum(axis=1) > 0
    assert sampled[0] and np.all(counts[~sampled] == 0)
    freq = counts[sampled] / counts[sampled].sum(axis=1, keepdims=True)
    assert expected[0, 2] == pytest.approx(expected[0, 3]) and expected[0, 2] > 0.2
    np.testing.assert_allclose(freq, expected[sampled], atol=0.06)


def test_release_margin_forms_one_triplet_per_anchor_with_negatives_at_any_distance(
    device: torch.device, dtype: torch.dtype
) -> None:
    """method.md section 11: B triplets, negatives drawn among ALL other-class samples with probability
    proportional to q(d)^-1 (d clamped below at 0.5), no upper cut-off."""
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(6), 2)
    x = rng.normal(size=(12, EMBED_DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[4] = -x[0] + 0.05 * rng.normal(size=EMBED_DIM)  # a negative of anchor 0 near the antipode
    x[4] /= np.linalg.norm(x[4])
    d = np.array(_euclid_release(x))
    assert d[0, 4] > 1.9 and (d[y[:, None] != y[None, :]] > 1.4).mean() > 0.3

    loss = build_loss("margin", 6, EMBED_DIM).to(device, dtype)
    emb, labels = torch.tensor(x, dtype=dtype, device=device), torch.tensor(y, device=device)
    torch.manual_seed(0)
    counts = np.zeros((12, 12))
    draws = 3000
    for _ in range(draws):
        a, p, n = (t.cpu().numpy() for t in loss.mine(emb, labels))
        assert len(a) == len(p) == len(n) == 12 and list(a) == list(range(12))
        assert np.all(y[a] == y[p]) and np.all(a != p) and np.all(y[n] != y[a])
        np.add.at(counts, (a, n), 1)
    expected = _distance_weights(x, y, 0.5, math.inf)
    freq = counts / draws
    assert freq[d > 1.4].sum() > 0 and freq[0, 4] > 0.1  # far negatives are drawn, often
    np.testing.assert_allclose(freq, expected, atol=4 * math.sqrt(0.25 / draws))


def test_release_margin_loss_is_divided_by_the_non_zero_terms(device: torch.device) -> None:
    loss = make_loss("margin")  # float64: compared with the reference at 1e-12
    x_np, y_np = make_batch()
    x, y = torch.tensor(x_np, device=device), torch.tensor(y_np, device=device)
    indices = tuple(torch.tensor(i, device=device) for i in ([0, 3], [1, 4], [6, 9]))
    value = loss(x, y, indices=indices)["dml_loss"].item()
    ctx = {"beta": loss.beta.detach().cpu().numpy(), "mined": [t.cpu().numpy() for t in indices]}
    assert value == pytest.approx(ref_margin_release(x_np, y_np, loss.hparams, ctx), rel=1e-12)


def test_release_margin_count_triplets_divides_as_the_release_code_runs(device: torch.device) -> None:
    """criteria/margin.py (release) divides by torch.sum((pos_loss > 0.) + (neg_loss > 0.)): bool + bool is
    a logical OR in torch, so a triplet with both hinge terms active counts once. count="triplets" (what the
    paper sweeps select) computes exactly that; count="terms" (method.md's wording, the default) counts it
    twice. The batch has triplets with both terms active, so the two differ."""
    x_np, y_np = make_batch(spread=2.0)  # loose classes: large d_ap and small d_an, both hinges active
    x, y = torch.tensor(x_np, device=device), torch.tensor(y_np, device=device)
    indices = tuple(torch.tensor(i, device=device) for i in ([0, 3, 6, 9], [1, 4, 7, 10], [6, 9, 0, 3]))
    values = {}
    for count in ("terms", "triplets"):
        loss = make_loss("margin", {"count": count})
        assert loss.hparams["reducer"] == f"nonzero_{count}"
        values[count] = loss(x, y, indices=indices)["dml_loss"].item()
        ctx = {"beta": loss.beta.detach().cpu().numpy(), "mined": [t.cpu().numpy() for t in indices]}
        assert values[count] == pytest.approx(ref_margin_release(x_np, y_np, loss.hparams, ctx), rel=1e-12)
    # the release's own expression, evaluated by torch, on this batch's hinge terms
    a, p, n = indices
    beta = loss.beta[y[a]]
    pos_loss = torch.relu((x[a] - x[p]).pow(2).sum(1).add(1e-8).sqrt() - beta + 0.2)
    neg_loss = torch.relu(beta - (x[a] - x[n]).pow(2).sum(1).add(1e-8).sqrt() + 0.2)
    both = int(((pos_loss > 0) & (neg_loss > 0)).sum())
    assert both > 0  # else the two counts could not differ
    pair_count = torch.sum((pos_loss > 0.0) + (neg_loss > 0.0)).to(torch.float)
    release = (torch.sum(pos_loss + neg_loss) / pair_count).item()
    assert values["triplets"] == pytest.approx(release, rel=1e-12)
    assert values["terms"] < values["triplets"]
    with pytest.raises(ConfigError, match=r"loss.kwargs.count='pairs' of loss 'margin' is not valid"):
        build_loss("margin", NUM_CLASSES, EMBED_DIM, {"count": "pairs"})


@pytest.mark.parametrize("name", LOSSES.names())
def test_hparams_are_paper_values(name: str) -> None:
    assert name in PAPER_HPARAMS, f"loss {name!r} has no paper hyper-parameters in tests/test_losses.py"
    loss = build_loss(name, NUM_CLASSES, EMBED_DIM, feature_dim=FEATURE_DIM)
    assert loss.hparams == PAPER_HPARAMS[name]
    assert set(type(loss).defaults) <= set(loss.hparams)


def test_margin_beta_is_classwise_and_initialised() -> None:
    loss = build_loss("margin", NUM_CLASSES, EMBED_DIM)
    assert loss.beta.shape == (NUM_CLASSES,) and loss.beta.requires_grad
    assert torch.allclose(loss.beta, torch.full((NUM_CLASSES,), 1.2))


@pytest.mark.parametrize("name", LOSSES.names())
def test_param_groups_cover_loss_owned_parameters(name: str) -> None:
    loss = build_loss(name, NUM_CLASSES, EMBED_DIM, feature_dim=FEATURE_DIM)
    groups = loss.param_groups(1e-5)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in loss.parameters() if p.requires_grad)
    for group in groups:
        assert set(group) == {"params", "lr", "weight_decay", "name"}
        assert group["weight_decay"] == 0.0 and group["lr"] > 0
        assert loss.param_groups(1e-5, lr_override=0.123)[0]["lr"] == 0.123


def test_param_group_learning_rates() -> None:
    margin = build_loss("margin", NUM_CLASSES, EMBED_DIM).param_groups(1e-5)
    assert len(margin) == 1 and margin[0]["lr"] == 5e-4 and margin[0]["weight_decay"] == 0.0
    assert margin[0]["params"][0].shape == (NUM_CLASSES,)
    assert build_loss("margin", NUM_CLASSES, EMBED_DIM).param_groups(1e-5, lr_override=1e-3)[0]["lr"] == 1e-3
    proxy = build_loss("proxy_anchor", NUM_CLASSES, EMBED_DIM)
    assert proxy.param_groups(2e-5)[0]["lr"] == pytest.approx(2e-3)
    assert proxy.param_groups(2e-5, lr_override=7e-4)[0]["lr"] == 7e-4
    proxy = build_loss("proxy_anchor", NUM_CLASSES, EMBED_DIM, {"proxy_lr_mult": 10})
    assert proxy.param_groups(2e-5)[0]["lr"] == pytest.approx(2e-4)
    assert build_loss("arcface", NUM_CLASSES, EMBED_DIM).param_groups(1e-5)[0]["lr"] == pytest.approx(5e-4)
    for name in ("multisimilarity", "triplet", "contrastive"):
        assert build_loss(name, NUM_CLASSES, EMBED_DIM).param_groups(1e-5) == []


def test_unknown_kwarg_names_key_and_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        build_loss("multisimilarity", NUM_CLASSES, EMBED_DIM, {"alpah": 3})
    message = str(info.value)
    assert "loss.kwargs.alpah" in message and "'alpha'" in message and "epsilon" in message


def test_kwarg_overrides_and_types() -> None:
    loss = build_loss("multisimilarity", NUM_CLASSES, EMBED_DIM, {"beta": 50, "epsilon": 0.2})
    assert loss.hparams["beta"] == 50.0 and isinstance(loss.hparams["beta"], float)
    assert loss.loss_fn.beta == 50.0 and loss.loss_fn.epsilon == 0.2
    pml = build_loss("multisimilarity", NUM_CLASSES, EMBED_DIM, {"formulation": "pml", "epsilon": 0.2})
    assert pml.miner.epsilon == 0.2
    with pytest.raises(ConfigError, match="formulation"):
        build_loss("margin", NUM_CLASSES, EMBED_DIM, {"formulation": "paper"})
    with pytest.raises(ConfigError, match="loss.kwargs.alpha"):
        build_loss("multisimilarity", NUM_CLASSES, EMBED_DIM, {"alpha": "two"})
    with pytest.raises(ConfigError, match="type_of_triplets"):
        build_loss("triplet", NUM_CLASSES, EMBED_DIM, {"type_of_triplets": "semi-hard"})


def test_unknown_loss_name() -> None:
    with pytest.raises(UnknownNameError, match="multisimilarity"):
        build_loss("multisimilarty", NUM_CLASSES, EMBED_DIM)


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize(
    "labels", [[0, 0, 0, 2, 2, 2, 3, 3, 3, 5, 5, 5], list(range(6)) * 2, list(range(12))]
)
def test_output_contract_and_backward(name: str, labels: list[int], device: torch.device) -> None:
    """float32 as in training; the last batch has no positive pair at all (every loss must give 0, not NaN)."""
    loss = build_loss(name, 12, EMBED_DIM, feature_dim=FEATURE_DIM).to(device)
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(12, EMBED_DIM), dim=1).to(device).requires_grad_()
    features = torch.randn(12, FEATURE_DIM, 2, 2, device=device)
    out = loss(emb, torch.tensor(labels, device=device), features=features)
    assert "dml_loss" in out and all(key.endswith("_loss") for key in out)
    for value in out.values():
        assert value.ndim == 0 and torch.isfinite(value)
    out["dml_loss"].backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in loss.parameters())


# ---- S2SD: the full objective against a numpy reference -------------------------------------------------
def _kl_rows_np(teacher: np.ndarray, student: np.ndarray) -> float:
    total = 0.0
    for t_row, s_row in zip(teacher, student, strict=True):
        p = np.exp(t_row - t_row.max())
        p /= p.sum()
        log_q = s_row - s_row.max() - math.log(np.exp(s_row - s_row.max()).sum())
        total += float(np.sum(p * (np.log(p) - log_q)))
    return total / len(teacher)


@pytest.mark.parametrize(
    "knobs",
    [
        {"pool_aggr": True, "head_hidden": "target", "combine": "mean"},  # the release
        {"pool_aggr": False, "head_hidden": "feature", "combine": "sum"},  # langdml before 2026-12
    ],
)
def test_s2sd_total_matches_reference(knobs: dict, device: torch.device) -> None:
    kwargs = {
        "target_dims": [6, 9],
        "sim_distill_weight": 2.0,
        "feat_distill_weight": 3.0,
        "feat_distill_delay": 0,
        "temperature": 0.7,
        **knobs,
    }
    torch.manual_seed(0)
    loss = build_loss("s2sd", NUM_CLASSES, EMBED_DIM, kwargs, feature_dim=FEATURE_DIM)
    loss = loss.to(device, torch.float64)  # float64: compared with central differences
    x_np, y_np = make_batch()
    fmap = np.random.default_rng(1).normal(size=(len(y_np), FEATURE_DIM, 2, 3))
    feats = fmap.mean(axis=(2, 3)) + (fmap.max(axis=(2, 3)) if knobs["pool_aggr"] else 0)
    heads = [
        [
            (m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy())
            for m in head
            if hasattr(m, "weight")
        ]
        for head in loss.heads
    ]
    assert heads[0][0][0].shape == ((6, FEATURE_DIM) if knobs["head_hidden"] == "target" else (5, 5))
    t = 0.7

    def reference(x: np.ndarray) -> float:
        h = loss.base.hparams
        s_src = x @ x.T / t
        targets, kls = [], []
        for (w1, b1), (w2, b2) in heads:
            target = _unit(np.maximum(feats @ w1.T + b1, 0) @ w2.T + b2)
            targets.append(ref_multisimilarity_release(target, y_np, h, {}))
            kls.append(_kl_rows_np(target @ target.T / t, s_src) * t * t)
        pooled = _unit(feats)
        feat = 3.0 * _kl_rows_np(pooled @ pooled.T / t, s_src) * t * t
        src = ref_multisimilarity_release(x, y_np, h, {})
        if knobs["combine"] == "mean":
            return (src + np.mean(targets)) / 2 + 2.0 * np.mean(kls) + feat
        return src + sum(targets) + 2.0 * sum(kls) + feat

    emb = torch.tensor(x_np, requires_grad=True, device=device)
    terms = loss(emb, torch.tensor(y_np, device=device), features=torch.tensor(fmap, device=device))
    assert set(terms) == {"dml_loss", "s2sd_target_loss", "s2sd_sim_distill_loss", "s2sd_feat_distill_loss"}
    total = sum(terms.values())
    total.backward()
    assert total.item() == pytest.approx(reference(x_np), rel=1e-7)
    np.testing.assert_allclose(emb.grad.cpu().numpy(), numeric_grad(reference, x_np), atol=1e-6, rtol=1e-4)


def batch_tensors(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_batch()
    return torch.tensor(x, dtype=dtype, device=device), torch.tensor(y, device=device)


def test_s2sd_feature_distillation_waits_for_its_delay_and_release_default_has_no_sim_distillation(
    device: torch.device, dtype: torch.dtype
) -> None:
    loss = build_loss(
        "s2sd", NUM_CLASSES, EMBED_DIM, {"feat_distill_delay": 2, "target_dims": [4]}, feature_dim=FEATURE_DIM
    ).to(device, dtype)
    x, y = batch_tensors(device, dtype)
    feats = torch.randn(len(y), FEATURE_DIM, 2, 2, dtype=dtype, device=device)
    values = [loss(x, y, features=feats) for _ in range(3)]
    assert [float(v["s2sd_feat_distill_loss"]) > 0 for v in values] == [False, False, True]
    assert all(float(v["s2sd_sim_distill_loss"]) == 0 for v in values)


def test_s2sd_refuses_pooled_features_when_it_must_pool_them_itself(
    device: torch.device, dtype: torch.dtype
) -> None:
    loss = build_loss("s2sd", NUM_CLASSES, EMBED_DIM, {"target_dims": [4]}, feature_dim=FEATURE_DIM)
    loss = loss.to(device, dtype)
    x, y = batch_tensors(device, dtype)
    with pytest.raises(ValueError, match="pool_aggr"):
        loss(x, y, features=torch.randn(len(y), FEATURE_DIM, dtype=dtype, device=device))
    with pytest.raises(ConfigError, match="head_hidden"):
        build_loss("s2sd", NUM_CLASSES, EMBED_DIM, {"head_hidden": "wide"}, feature_dim=FEATURE_DIM)
