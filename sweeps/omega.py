"""Ablation: omega x temperature of the language matching term (ELG and PLG), CUB200, multisimilarity.

The recipe of the cell it ablates (langdml_core/paper.py): CUB200, 128-d, multisimilarity, 200 epochs,
batch 90 (release benchmark script, commit b07ac5b, whose PLG omega 7.5 lies on the grid below); only omega
and the temperature change. The paper shows omega and temperature curves without published numbers: this
sweep produces ours; the report plots them (no reference column).

Command: ray submit cluster/gpu.yaml sweeps/omega.py
Trials: 90
Cost: about 200 GPU-hours on A10Gs (estimate: python cluster/cost.py sweeps/omega.py).
"""

from langdml_core import paper

NAME = "omega"

PLOTS = [{"x": "language.omega", "lines": ["language.guidance", "language.temperature"]}]
"""results/omega/omega.png: recall@1 against omega, one line per guidance mode and temperature."""


def get_config():
    return {}


def get_sweep():
    return {
        "language.guidance": ["elg", "plg"],
        "language.omega": [1.0, 2.5, 5.0, 7.5, 10.0],
        "language.temperature": [0.5, 1.0, 2.0],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return paper.recipe("cub200", 128, "multisimilarity", trial["language.guidance"])


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
