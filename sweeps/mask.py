"""Ablation: is the same-class override critical? Mask on/off x shift gamma, plus the shuffled-texts control.

The recipe of the cell it ablates (langdml_core/paper.py): CUB200, 128-d multisimilarity with ELG, 200 epochs,
batch 90, omega 7.5 (derived from the release's PLG cell, commit b07ac5b). With the mask off, gamma does not
change P_lang at all (a row-constant shift); with it on, gamma sets the value same-class entries are pinned
to. The shuffled control permutes class texts, so any gain it shows cannot come from their meaning.

Command: ray submit cluster/gpu.yaml sweeps/mask.py
Trials: 36
Cost: about 80 GPU-hours on A10Gs (estimate: python cluster/cost.py sweeps/mask.py).
"""

from langdml_core import paper

NAME = "mask"


def get_config():
    return paper.recipe("cub200", 128, "multisimilarity", "elg")


def get_sweep():
    return {
        "language.mask_same_class": [True, False],
        "language.shift": [0.0, 1.0, 2.0],
        "language.shuffle_texts": [False, True],
        "run.seed": [0, 1, 2],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
