"""The paper's "best results" setting: ResNet-50, 512-d embedding, multisimilarity and S2SD, with PLG.

The release's recipe for its 512-d PLG cells (langdml_core/paper.py; benchmark script, commit b07ac5b):
CUB200 multisimilarity 150 epochs, batch 90, omega 10; CUB200 S2SD 250 epochs, batch 108, omega 2 (feature
distillation weight 60); CARS196 multisimilarity 250 / 108 / 5.5; CARS196 S2SD 300 / 108 / 2 (weight 40).
SOP: stand-ins (100 epochs, batch 108, omega 0.5, S2SD weight 50). The paper's best R@1: CUB 71.4, CARS196
90.2, SOP 81.3 (the paper does not say which setting gave them; this sweep is our best reading of it).
`--list --resolve` prints every value with its source.

Command: ray submit cluster/gpu.yaml sweeps/best_512.py
Trials: 18
Cost: about 76 GPU-hours on A10Gs (estimate: python cluster/cost.py sweeps/best_512.py).
"""

from langdml_core import paper

NAME = "best_512"


def get_config():
    return {}


def get_sweep():
    return {
        "data.name": ["cub200", "cars196", "sop"],
        "loss.name": ["multisimilarity", "s2sd"],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return paper.recipe(trial["data.name"], 512, trial["loss.name"], "plg")


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
