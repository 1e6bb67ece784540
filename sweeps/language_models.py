"""Ablation: which language model provides the class-name structure (ELG), CUB200 and CARS196.

Encoders need local weights (language.encoder_path or an HF cache populated on the cluster); word-vector
encoders need a vectors file: set it with --set language.encoder_path=... per encoder family.

Command: ray submit cluster/gpu.yaml sweeps/language_models.py
Trials: 30
"""

NAME = "language_models"

OMEGA = {"cub200": 7.5, "cars196": 6.0}
BATCH = {"cub200": 90, "cars196": 112}


def get_config():
    return {
        "model.backbone": "resnet50.tv_in1k",
        "language.guidance": "elg",
        "run.epochs": 100,
    }


def get_sweep():
    return {
        "data.name": ["cub200", "cars196"],
        "language.encoder": ["clip-ViT-B-32", "clip-ViT-L-14", "bert-base", "roberta-large", "minilm"],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return {"language.omega": OMEGA[trial["data.name"]], "optim.batch_size": BATCH[trial["data.name"]]}


if __name__ == "__main__":
    import sys

    from langdml_core.sweep import main

    sys.exit(main(__file__))
