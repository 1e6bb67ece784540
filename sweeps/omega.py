"""Ablation: omega x temperature of the language matching term (ELG and PLG), CUB200, multisimilarity.

The paper shows omega and temperature curves without published numbers: this sweep produces ours; the
report plots them (no reference column).

Command: ray submit cluster/gpu.yaml sweeps/omega.py
Trials: 90
"""

NAME = "omega"


def get_config():
    return {
        "data.name": "cub200",
        "model.backbone": "resnet50.tv_in1k",
        "optim.batch_size": 90,
        "language.encoder": "clip-ViT-B-32",
        "language.plg_classifier": "resnet50.tv_in1k",
        "run.epochs": 100,
    }


PLOTS = [{"x": "language.omega", "lines": ["language.guidance", "language.temperature"]}]
"""results/omega/omega.png: recall@1 against omega, one line per guidance mode and temperature."""


def get_sweep():
    return {
        "language.guidance": ["elg", "plg"],
        "language.omega": [1.0, 2.5, 5.0, 7.5, 10.0],
        "language.temperature": [0.5, 1.0, 2.0],
        "run.seed": [0, 1, 2],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.sweep import main

    sys.exit(main(__file__))
