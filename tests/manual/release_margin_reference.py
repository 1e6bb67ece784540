"""Write tests/fixtures/release_margin.json: inputs and outputs of the release's own margin loss.

The release (Roth, Vinyals, Akata 2022, github.com/ExplainableML/LanguageGuidance_for_DML) mines the margin
loss's triplets at random (distance-weighted sampling), so its output is not a function of the batch alone.
This script runs its criteria/margin.py with the batch miner replaced by a fixed triplet list, in float64 on
the CPU, and stores the embeddings, labels, triplets, class-wise betas, the loss and its gradients (with
respect to the embeddings and to beta). tests/test_release_losses.py compares ours with them.

The release's code is not part of langdml: point --release at a checkout of it (criteria/margin.py imports a
module `batchminer`, which this script stubs).

Run: .venv/bin/python tests/manual/release_margin_reference.py --release PATH [--out tests/fixtures/release_margin.json]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

# (seed, classes, samples per class, dim, class spread, margin): a spread of 0 puts every sample of a class
# at its class centre's direction; larger spreads loosen the classes, so both hinge terms can be active.
CASES = [
    (0, 6, 2, 8, 0.8, 0.2),  # the paper's margin 0.2; a mix of active terms
    (1, 4, 4, 8, 2.0, 0.2),  # loose classes: many triplets with both terms active
    (2, 8, 2, 16, 0.3, 0.2),  # tight classes: many inactive terms
    (3, 5, 3, 8, 1.0, 0.1),  # another margin
]


def load_release(path: Path):
    stub = types.ModuleType("batchminer")
    stub.BATCHMINING_METHODS = {"distance": None}
    sys.modules["batchminer"] = stub
    spec = importlib.util.spec_from_file_location("release_margin", path / "criteria" / "margin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch(seed: int, classes: int, per_class: int, dim: int, spread: float):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    x = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    # one triplet per anchor: a random positive and a random negative (what the release's miner returns, B triplets)
    triplets = []
    for a, y in enumerate(labels):
        positives = [p for p in range(len(labels)) if labels[p] == y and p != a]
        negatives = [n for n in range(len(labels)) if labels[n] != y]
        triplets.append([a, int(rng.choice(positives)), int(rng.choice(negatives))])
    # class-wise betas near the release's 1.2, dyadic so float32 (the release's parameter) holds them exactly
    betas = 1.2 + np.round(rng.normal(0, 0.1, classes) * 64) / 64
    betas = betas.astype(np.float32).astype(np.float64)
    return x, labels, triplets, betas


def run_case(release, seed, classes, per_class, dim, spread, margin) -> dict:
    x, labels, triplets, betas = batch(seed, classes, per_class, dim, spread)
    opt = types.SimpleNamespace(
        n_classes=classes,
        loss_margin_margin=margin,
        loss_margin_nu=0.0,
        loss_margin_beta_constant=False,
        loss_margin_beta=1.2,
        loss_margin_beta_lr=5e-4,
    )
    criterion = release.Criterion(opt, lambda batch, labels: triplets)
    with torch.no_grad():
        criterion.beta.copy_(torch.tensor(betas, dtype=torch.float32))
    emb = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    loss = criterion(emb, torch.tensor(labels))
    loss.backward()
    a, pos, neg = (np.array(column) for column in zip(*triplets, strict=True))
    d_ap = np.sqrt(((x[a] - x[pos]) ** 2).sum(1) + 1e-8)
    d_an = np.sqrt(((x[a] - x[neg]) ** 2).sum(1) + 1e-8)
    active_pos = d_ap - betas[labels[a]] + margin > 0
    active_neg = betas[labels[a]] - d_an + margin > 0
    return {
        "seed": seed,
        "margin": margin,
        "embeddings": x.tolist(),
        "labels": labels.tolist(),
        "triplets": triplets,
        "beta": betas.tolist(),
        "triplets_with_both_terms_active": int((active_pos & active_neg).sum()),
        "triplets_with_one_term_active": int((active_pos ^ active_neg).sum()),
        "loss": float(loss.detach()),
        "grad": emb.grad.tolist(),
        "grad_beta": criterion.beta.grad.double().tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True, help="a checkout of the release")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parents[1] / "fixtures" / "release_margin.json"
    )
    parser.add_argument(
        "--commit", default="", help="the release commit the checkout is at (for the provenance)"
    )
    args = parser.parse_args()
    source = (args.release / "criteria" / "margin.py").read_bytes()
    release = load_release(args.release)
    record = {
        "source": {
            "repository": "https://github.com/ExplainableML/LanguageGuidance_for_DML",
            "file": "criteria/margin.py",
            "commit": args.commit,
            "sha256": hashlib.sha256(source).hexdigest(),
            "how": "criteria/margin.py's Criterion (beta_constant=False, nu=0) run in float64 on the CPU, torch "
            + torch.__version__
            + ", with the batch miner replaced by each case's fixed triplets; made by "
            "tests/manual/release_margin_reference.py",
        },
        "cases": [run_case(release, *case) for case in CASES],
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for case in record["cases"]:
        both, one = case["triplets_with_both_terms_active"], case["triplets_with_one_term_active"]
        print(
            f"seed {case['seed']}: {len(case['triplets'])} triplets, {both} with both terms active, {one} with one; loss {case['loss']:.12f}"
        )


if __name__ == "__main__":
    main()
