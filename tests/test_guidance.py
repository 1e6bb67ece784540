import math

import numpy as np
import pytest
import torch
from conftest import tolerance

from langdml_core.language.guidance import (
    LanguageGuidance,
    batch_language_similarity,
    language_match_loss,
    similarity_match_loss,
)


def naive_match(emb, labels, lang_sim, T, shift, direction, mask):
    """Per-row plain-Python reference of L_match (method: steps 1-6)."""
    B = len(labels)
    total = 0.0
    for i in range(B):
        s_img = [float(np.dot(emb[i], emb[j])) for j in range(B)]
        s_lang = [float(lang_sim[i][j]) + shift for j in range(B)]
        if mask:
            for j in range(B):
                if labels[i] == labels[j]:
                    s_img[j] = s_lang[j] = 1.0 + shift
        z_img = sum(math.exp(v / T) for v in s_img)
        z_lang = sum(math.exp(v / T) for v in s_lang)
        p_img = [math.exp(v / T) / z_img for v in s_img]
        p_lang = [math.exp(v / T) / z_lang for v in s_lang]
        p, q = (p_img, p_lang) if direction == "img||lang" else (p_lang, p_img)
        total += sum(p[j] * (math.log(p[j]) - math.log(q[j])) for j in range(B))
    return total / B * T**2


def batch(seed, B=8, D=5):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(B, D))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=B)
    text = rng.normal(size=(4, 6))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    lang_sim = text[labels] @ text[labels].T
    return emb, labels, lang_sim


@pytest.mark.parametrize("direction", ["img||lang", "lang||img"])
@pytest.mark.parametrize("T,shift", [(1.0, 1.0), (0.5, 0.0), (2.0, 3.0)])
@pytest.mark.parametrize("mask", [True, False])
def test_matches_naive_reference_value_and_gradient(direction, T, shift, mask, device):
    emb, labels, lang_sim = batch(seed=int(T * 10 + shift))
    kwargs = dict(temperature=T, shift=shift, direction=direction, mask_same_class=mask)
    # float64 whatever LANGDML_TEST_DTYPE: compared with central differences at 1e-7; the device is the env's
    e = torch.tensor(emb, requires_grad=True, device=device)
    labels_t, lang_sim_t = torch.tensor(labels, device=device), torch.tensor(lang_sim, device=device)
    loss = language_match_loss(e, labels_t, lang_sim_t, **kwargs)
    loss.backward()
    ref = naive_match(emb, labels, lang_sim, T, shift, direction, mask)
    assert loss.item() == pytest.approx(ref, rel=1e-10, abs=1e-12)
    # central differences of the reference (embeddings are treated as free vectors, as in autograd)
    numeric = np.zeros_like(emb)
    h = 1e-6
    for idx in np.ndindex(emb.shape):
        plus, minus = emb.copy(), emb.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (
            naive_match(plus, labels, lang_sim, T, shift, direction, mask)
            - naive_match(minus, labels, lang_sim, T, shift, direction, mask)
        ) / (2 * h)
    np.testing.assert_allclose(e.grad.cpu().numpy(), numeric, atol=1e-7)


def test_same_class_pairs_get_exactly_zero_gradient(device, dtype):
    emb, _, lang_sim = batch(seed=4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=device)
    sim_img = torch.tensor(emb @ emb.T, dtype=dtype, device=device, requires_grad=True)
    lang = torch.tensor(lang_sim, dtype=dtype, device=device)
    similarity_match_loss(sim_img, labels, lang).backward()
    same = labels[:, None] == labels[None, :]
    assert torch.all(sim_img.grad[same] == 0)
    assert torch.all(sim_img.grad[~same] != 0)
    # Without the mask they do get a gradient (the ablation switch really switches).
    sim_img.grad = None
    similarity_match_loss(sim_img, labels, lang, mask_same_class=False).backward()
    assert torch.all(sim_img.grad[same & ~torch.eye(8, dtype=torch.bool, device=device)] != 0)


def test_shift_leaves_p_lang_unchanged_without_mask_but_matters_with_it(device, dtype):
    emb, labels, lang_sim = batch(seed=5)
    args = (
        torch.tensor(emb, dtype=dtype, device=device),
        torch.tensor(labels, device=device),
        torch.tensor(lang_sim, dtype=dtype, device=device),
    )
    a = language_match_loss(*args, shift=0.0, mask_same_class=False)
    b = language_match_loss(*args, shift=2.5, mask_same_class=False)
    assert float(a) == pytest.approx(float(b), rel=tolerance(dtype, 1e-12, 1e-5))
    c = language_match_loss(*args, shift=0.0, mask_same_class=True)
    d = language_match_loss(*args, shift=2.5, mask_same_class=True)
    assert abs(float(c) - float(d)) > 1e-4


def test_plg_similarity_is_the_rank_aligned_mean(device, dtype):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(5, 3, 4))
    table /= np.linalg.norm(table, axis=-1, keepdims=True)
    labels = np.array([4, 0, 2, 2, 1])
    table_t = torch.tensor(table, dtype=dtype, device=device)
    got = batch_language_similarity(table_t, torch.tensor(labels, device=device)).cpu().numpy()
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            by_hand = sum(float(np.dot(table[a, r], table[b, r])) for r in range(3)) / 3
            assert got[i, j] == pytest.approx(by_hand, abs=tolerance(dtype, 1e-12, 1e-6))


def test_delay_and_omega(device, dtype):
    emb, labels, lang_sim = batch(seed=6)
    table = torch.randn(4, 1, 6, dtype=dtype, device=device)
    g = LanguageGuidance(
        table, omega=2.0, temperature=1.0, shift=1.0, direction="img||lang", mask_same_class=True, delay=3
    )
    e, y = torch.tensor(emb, dtype=torch.float32, device=device), torch.tensor(labels, device=device)
    assert float(g(e, y, step=2)["lang_match_loss"]) == 0.0
    expected = 2.0 * language_match_loss(e, y, batch_language_similarity(g.table, y))
    assert float(g(e, y, step=3)["lang_match_loss"]) == pytest.approx(float(expected), rel=1e-6)


def test_total_gradient_differs_from_guidance_free_by_omega_times_match_gradient(device, dtype):
    from langdml_core.losses import build_loss
    from langdml_core.train import loss_terms

    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(12, 8, dtype=dtype), dim=1).to(device)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5], device=device)
    criterion = build_loss("multisimilarity", 6, 8).to(device=device, dtype=dtype)
    table = torch.nn.functional.normalize(torch.randn(6, 1, 10, dtype=dtype), dim=-1)
    omega = 3.5
    guidance = LanguageGuidance(
        table, omega=omega, temperature=1.0, shift=1.0, direction="img||lang", mask_same_class=True
    ).to(device=device, dtype=dtype)

    def grad_of(guid):
        e = emb.clone().requires_grad_(True)
        sum(loss_terms(criterion, guid, e, labels, global_step=0).values()).backward()
        return e.grad

    e = emb.clone().requires_grad_(True)
    language_match_loss(e, labels, batch_language_similarity(guidance.table, labels)).backward()
    rtol, atol = tolerance(dtype, 1e-9, 1e-4), tolerance(dtype, 1e-12, 1e-6)
    torch.testing.assert_close(grad_of(guidance) - grad_of(None), omega * e.grad, rtol=rtol, atol=atol)
