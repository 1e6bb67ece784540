"""Ablation: is the same-class override critical? Mask on/off x shift gamma, plus the shuffled-texts control.

ELG on CUB200 with multisimilarity; omega 7.5 (release PLG value, stand-in for ELG). With the mask off, gamma
does not change P_lang at all (a row-constant shift); with it on, gamma sets the value same-class entries are
pinned to. The shuffled control permutes class texts, so any gain it shows cannot come from their meaning.

Command: ray submit cluster/gpu.yaml sweeps/mask.py
Trials: 36
"""

NAME = "mask"


def get_config():
    return {
        "data.name": "cub200",
        "model.backbone": "resnet50.tv_in1k",
        "optim.batch_size": 90,
        "language.guidance": "elg",
        "language.encoder": "clip-ViT-B-32",
        "language.omega": 7.5,
        "run.epochs": 100,
    }


def get_sweep():
    return {
        "language.mask_same_class": [True, False],
        "language.shift": [0.0, 1.0, 2.0],
        "language.shuffle_texts": [False, True],
        "run.seed": [0, 1, 2],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.sweep import main

    sys.exit(main(__file__))
