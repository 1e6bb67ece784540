"""Ablation: image backbones with and without language guidance, CUB200, multisimilarity.

The recipe of the cell it ablates (langdml_core/paper.py): CUB200, 128-d multisimilarity, 200 epochs, batch
90, omega 7.5 for PLG (release benchmark script, commit b07ac5b) and ELG (derived), 0 without guidance. The
release ran ResNet-50 only: for the other backbones these values are stand-ins. Only the backbone changes.

Command: ray submit cluster/gpu.yaml sweeps/backbones.py
Trials: 27
Cost: about 60 GPU-hours on A10Gs (estimate for ResNet-50: python cluster/cost.py sweeps/backbones.py).
"""

from langdml_core import paper

NAME = "backbones"


def get_config():
    return {}


def get_sweep():
    return {
        "model.backbone": [
            "resnet50.tv_in1k",
            "tf_efficientnet_lite0",
            "vit_small_patch16_224.augreg_in21k_ft_in1k",
        ],
        "language.guidance": ["none", "elg", "plg"],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return paper.recipe("cub200", 128, "multisimilarity", trial["language.guidance"])


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
