"""Ablation: prompt templates for ELG (the paper found them all close), CUB200 and CARS196, multisimilarity.

Omega: the PLG values of the release (CUB 7.5, CARS 6) as stand-ins for ELG (not published).

Command: ray submit cluster/gpu.yaml sweeps/prompts.py
Trials: 24
"""

NAME = "prompts"

OMEGA = {"cub200": 7.5, "cars196": 6.0}
BATCH = {"cub200": 90, "cars196": 112}


def get_config():
    return {
        "model.backbone": "resnet50.tv_in1k",
        "language.guidance": "elg",
        "language.encoder": "clip-ViT-B-32",
        "run.epochs": 100,
    }


def get_sweep():
    return {
        "data.name": ["cub200", "cars196"],
        "language.prompt": ["a photo of a {}", "{}", "a photo of a {}, a type of bird or car", "an image of a {}"],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return {"language.omega": OMEGA[trial["data.name"]], "optim.batch_size": BATCH[trial["data.name"]]}


if __name__ == "__main__":
    import sys

    from langdml_core.sweep import main

    sys.exit(main(__file__))
