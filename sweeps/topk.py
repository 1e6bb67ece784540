"""Ablation: number of ImageNet pseudo-labels per class (PLG top-k), CUB200 and CARS196, multisimilarity.

The recipe of the PLG cells it ablates (langdml_core/paper.py, release benchmark script, commit b07ac5b):
128-d multisimilarity, CUB200 200 epochs, batch 90, omega 7.5; CARS196 250 epochs, batch 108, omega 6. Only
k changes (the release uses 5 and requires k > 1; k = 1 is allowed here: the table is (C, 1, D) like ELG).

Command: ray submit cluster/gpu.yaml sweeps/topk.py
Trials: 30
Cost: about 85 GPU-hours on A10Gs (estimate: python cluster/cost.py sweeps/topk.py).
"""

from langdml_core import paper

NAME = "topk"

PLOTS = [{"x": "language.topk", "lines": ["data.name"]}]
"""results/topk/topk.png: recall@1 against the number of pseudo-labels k, one line per dataset."""


def get_config():
    return {}


def get_sweep():
    return {
        "data.name": ["cub200", "cars196"],
        "language.topk": [1, 2, 5, 10, 20],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return paper.recipe(trial["data.name"], 128, "multisimilarity", "plg")


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
