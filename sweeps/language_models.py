"""Ablation: which language model provides the class-name structure (ELG), CUB200 and CARS196.

The recipe of the ELG cells it ablates (langdml_core/paper.py): 128-d multisimilarity, CUB200 200 epochs,
batch 90, omega 7.5; CARS196 250 epochs, batch 108, omega 6 (each derived from the release's PLG cell, commit
b07ac5b; the omega was set for CLIP ViT-B/32 and is kept for every encoder). Only the encoder changes.

Encoders need local weights (language.encoder_path or an HF cache populated on the cluster); word-vector
encoders need a vectors file: set it with --set language.encoder_path=... per encoder family.

Command: ray submit cluster/gpu.yaml sweeps/language_models.py
Trials: 30
Cost: about 85 GPU-hours on A10Gs (estimate: python cluster/cost.py sweeps/language_models.py).
"""

from langdml_core import paper

NAME = "language_models"


def get_config():
    return {}


def get_sweep():
    return {
        "data.name": ["cub200", "cars196"],
        "language.encoder": ["clip-ViT-B-32", "clip-ViT-L-14", "bert-base", "roberta-large", "minilm"],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return paper.recipe(trial["data.name"], 128, "multisimilarity", "elg")


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
