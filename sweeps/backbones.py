"""Ablation: image backbones with and without language guidance, CUB200, multisimilarity.

Omega: the release's CUB PLG value 7.5 for every backbone (a stand-in for the non-ResNet-50 rows).

Command: ray submit cluster/gpu.yaml sweeps/backbones.py
Trials: 27
"""

NAME = "backbones"


def get_config():
    return {
        "data.name": "cub200",
        "optim.batch_size": 90,
        "language.encoder": "clip-ViT-B-32",
        "language.plg_classifier": "resnet50.tv_in1k",
        "run.epochs": 100,
    }


def get_sweep():
    return {
        "model.backbone": ["resnet50.tv_in1k", "tf_efficientnet_lite0", "vit_small_patch16_224.augreg_in21k_ft_in1k"],
        "language.guidance": ["none", "elg", "plg"],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return {"language.omega": 7.5 if trial["language.guidance"] != "none" else 0.0}


if __name__ == "__main__":
    import sys

    from langdml_core.sweep import main

    sys.exit(main(__file__))
