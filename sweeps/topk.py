"""Ablation: number of ImageNet pseudo-labels per class (PLG top-k), CUB200 and CARS196, multisimilarity.

The release requires k > 1 (k = 1 is allowed here: the table is (C, 1, D) like ELG). Omega: the release's
PLG values (CUB 7.5, CARS 6).

Command: ray submit cluster/gpu.yaml sweeps/topk.py
Trials: 30
"""

NAME = "topk"

OMEGA = {"cub200": 7.5, "cars196": 6.0}
BATCH = {"cub200": 90, "cars196": 112}


def get_config():
    return {
        "model.backbone": "resnet50.tv_in1k",
        "language.guidance": "plg",
        "language.encoder": "clip-ViT-B-32",
        "language.plg_classifier": "resnet50.tv_in1k",
        "run.epochs": 100,
    }


PLOTS = [{"x": "language.topk", "lines": ["data.name"]}]
"""results/topk/topk.png: recall@1 against the number of pseudo-labels k, one line per dataset."""


def get_sweep():
    return {
        "data.name": ["cub200", "cars196"],
        "language.topk": [1, 2, 5, 10, 20],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    return {"language.omega": OMEGA[trial["data.name"]], "optim.batch_size": BATCH[trial["data.name"]]}


if __name__ == "__main__":
    import sys

    from langdml_core.sweep import main

    sys.exit(main(__file__))
