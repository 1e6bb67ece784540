"""Ablation: prompt templates for ELG (the paper found them all close), CUB200 and CARS196, multisimilarity.

The recipe of the ELG cells it ablates (langdml_core/paper.py): 128-d multisimilarity, CUB200 200 epochs,
batch 90, omega 7.5; CARS196 250 epochs, batch 108, omega 6 (each derived from the release's PLG cell, commit
b07ac5b: ELG omega was not published). Only the prompt changes.

Command: ray submit cluster/gpu.yaml sweeps/prompts.py
Trials: 24
Cost: about 68 GPU-hours on A10Gs (estimate: python cluster/cost.py sweeps/prompts.py).
"""

from langdml_core import paper

NAME = "prompts"


def get_config():
    return {}


def get_sweep():
    return {
        "data.name": ["cub200", "cars196"],
        "language.prompt": [
            "a photo of a {}",
            "{}",
            "a photo of a {}, a type of bird or car",
            "an image of a {}",
        ],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return paper.recipe(trial["data.name"], 128, "multisimilarity", "elg")


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
