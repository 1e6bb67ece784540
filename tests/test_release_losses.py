"""Our losses against the authors' own numbers: inputs and outputs of the release's loss code.

`tests/fixtures/release_losses.json` holds 4 multisimilarity and 4 S2SD cases computed in float64 with the
release's criteria/multisimilarity.py and criteria/s2sd.py (Roth, Vinyals, Akata 2022, commit b07ac5b; see the
file's `provenance`). `tests/fixtures/release_margin.json` holds 4 cases of the release's criteria/margin.py, run
with its random batch miner replaced by fixed triplets (tests/manual/release_margin_reference.py made it; its
`source` names the file and how). Tolerances: the loss to 1e-7 relative, each gradient to 1e-6 of its largest entry (the
release's own code, run twice on the same inputs, differs by up to ~1e-7 relative in the feature-map
gradients because beta = 40 and feat_w = 125 amplify rounding).

Every tensor is float64 whatever LANGDML_TEST_DTYPE (the release's numbers are float64, compared at 1e-7);
the device is LANGDML_TEST_DEVICE's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TEST_DEVICE

from langdml_core.losses import build_loss

CASES = json.loads((Path(__file__).parent / "fixtures" / "release_losses.json").read_text())
MARGIN = json.loads((Path(__file__).parent / "fixtures" / "release_margin.json").read_text())


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, device=TEST_DEVICE)


def integers(values) -> torch.Tensor:
    return torch.tensor(values, device=TEST_DEVICE)


def assert_grad_close(ours: torch.Tensor, release: list) -> None:
    expected = np.asarray(release)
    assert np.abs(ours.cpu().numpy() - expected).max() <= 1e-6 * np.abs(expected).max()


def assert_loss_close(ours: torch.Tensor, release: float) -> None:
    assert ours.item() == pytest.approx(release, rel=1e-7, abs=0)


@pytest.mark.parametrize("case", CASES["multisimilarity"], ids=lambda c: f"B={len(c['labels'])}")
def test_multisimilarity_reproduces_the_release(case: dict) -> None:
    kwargs = {k: case[k] for k in ("alpha", "beta", "base")} | {"epsilon": case["margin"]}
    labels = integers(case["labels"])
    loss = build_loss("multisimilarity", int(labels.max()) + 1, len(case["embeddings"][0]), kwargs).to(
        TEST_DEVICE, torch.float64
    )
    emb = t(case["embeddings"]).requires_grad_()
    value = loss(emb, labels)["dml_loss"]
    value.backward()
    assert_loss_close(value, case["loss"])
    assert_grad_close(emb.grad, case["grad"])


def test_the_pml_formulation_differs_from_the_release() -> None:
    """The named alternative is really another objective (else the release tests prove nothing)."""
    case = CASES["multisimilarity"][0]
    labels = integers(case["labels"])
    loss = build_loss("multisimilarity", int(labels.max()) + 1, 8, {"formulation": "pml"}).to(
        TEST_DEVICE, torch.float64
    )
    assert abs(loss(t(case["embeddings"]), labels)["dml_loss"].item() - case["loss"]) > 1e-3


@pytest.mark.parametrize(
    "case", CASES["s2sd"], ids=lambda c: f"aggr={c['pool_aggr']}-w={c['sim_distill_weight']}"
)
def test_s2sd_reproduces_the_release(case: dict) -> None:
    labels = integers(case["labels"])
    fmap = t(case["feature_maps"]).requires_grad_()
    raw = t(case["embeddings_unnormalised"]).requires_grad_()
    kwargs = {
        "target_dims": case["target_dims"],
        "temperature": case["temperature"],
        "pool_aggr": case["pool_aggr"],
        "sim_distill_weight": case["sim_distill_weight"],
        "feat_distill_weight": case["feat_distill_weight"],
        "feat_distill_delay": 0 if case["feat_distill_active"] else 10**9,
    }
    loss = build_loss("s2sd", int(labels.max()) + 1, raw.shape[1], kwargs, feature_dim=fmap.shape[1])
    loss = loss.to(TEST_DEVICE, torch.float64)
    with torch.no_grad():
        for head, weights in zip(loss.heads, case["heads"], strict=True):
            head[0].weight.copy_(t(weights["w1"]))
            head[0].bias.copy_(t(weights["b1"]))
            head[2].weight.copy_(t(weights["w2"]))
            head[2].bias.copy_(t(weights["b2"]))
    # The release normalises the source embedding inside the loss; our model outputs it normalised.
    terms = loss(F.normalize(raw, dim=1), labels, features=fmap)
    total = sum(terms.values())
    total.backward()
    assert_loss_close(total, case["loss"])
    assert_grad_close(raw.grad, case["grad_embeddings"])
    assert_grad_close(fmap.grad, case["grad_feature_maps"])
    assert_grad_close(loss.heads[0][0].weight.grad, case["grad_head0_w1"])


def margin_loss(case: dict, count: str):
    loss = build_loss(
        "margin", len(case["beta"]), len(case["embeddings"][0]), {"margin": case["margin"], "count": count}
    )
    loss = loss.to(TEST_DEVICE, torch.float64)
    with torch.no_grad():
        loss.beta.copy_(t(case["beta"]))
    return loss


def triplet_indices(case: dict) -> tuple[torch.Tensor, ...]:
    """(anchors, positives, negatives): the fixed triplets the release's miner was replaced by."""
    return tuple(integers(column) for column in zip(*case["triplets"], strict=True))


@pytest.mark.parametrize("case", MARGIN["cases"], ids=lambda c: f"seed={c['seed']}")
def test_margin_with_count_triplets_reproduces_the_release(case: dict) -> None:
    """The release's margin divisor counts the triplets with a non-zero term (count="triplets", what the paper
    sweeps select), on the release's own output: loss, embedding gradient and beta gradient."""
    loss = margin_loss(case, "triplets")
    emb = t(case["embeddings"]).requires_grad_()
    indices = triplet_indices(case)
    value = loss(emb, integers(case["labels"]), indices=indices)["dml_loss"]
    value.backward()
    assert_loss_close(value, case["loss"])
    assert_grad_close(emb.grad, case["grad"])
    assert_grad_close(loss.beta.grad, case["grad_beta"])


def test_margin_with_count_terms_differs_from_the_release_where_both_terms_are_active() -> None:
    """The default (method.md's wording: the number of non-zero terms) is another divisor on exactly the
    batches where some triplet has both hinge terms active, and the same one where none has."""
    for case in MARGIN["cases"]:
        loss = margin_loss(case, "terms")
        indices = triplet_indices(case)
        value = loss(t(case["embeddings"]), integers(case["labels"]), indices=indices)["dml_loss"].item()
        if case["triplets_with_both_terms_active"]:
            assert value < case["loss"] * (1 - 1e-3)
        else:
            assert value == pytest.approx(case["loss"], rel=1e-7, abs=0)
    assert {bool(c["triplets_with_both_terms_active"]) for c in MARGIN["cases"]} == {True, False}
