"""Table 1 of Roth et al. 2022: language guidance on top of three DML objectives, three datasets.

datasets {cub200, cars196, sop} x losses {multisimilarity, margin, s2sd} x guidance {none, elg, plg} x 3 seeds.
ResNet-50 (torchvision ImageNet weights, frozen BN), 128-d, Adam lr 1e-5, wd 4e-4, constant lr, 100 epochs,
2 samples per class, batch 90 (CUB) / 112 (CARS196, SOP); language: CLIP ViT-B/32 text tower; PLG: top-5
names from a ResNet-50 ImageNet classifier. Every epoch is evaluated (the release's protocol takes the best
test epoch; the report shows it beside the last epoch).

Omega per cell (language.omega). The release published omega only for its PLG runs:
  CUB R50-128 msim 7.5, S2SD 1.5; CARS R50-128 msim 6, S2SD 2.5 (source: release).
Every other cell uses a DOCUMENTED STAND-IN until sweeps/tune_omega.py has produced a tuned value:
  ELG cells use the PLG value of the same dataset and loss; margin cells use the multisimilarity value of the
  same dataset; SOP uses 0.5 (the release says "roughly 0.1-1, to be tuned"). OMEGA_SOURCE says which is which,
  and the value is written into each trial's config (see `--list --resolve`).

Command: ray submit cluster/gpu.yaml sweeps/table1.py   (or: python sweeps/table1.py --address auto)
Needs: $LANGDML_DATA_ROOT/{cub200,cars196,sop}, torchvision ResNet-50 weights and CLIP ViT-B/32 in the HF cache.
Trials: 81
Cost: see cluster/README.md (about 1-6 GPU-hours per trial depending on the dataset).
"""

NAME = "table1"

OMEGA = {  # (dataset, loss) -> omega
    ("cub200", "multisimilarity"): 7.5, ("cub200", "s2sd"): 1.5, ("cub200", "margin"): 7.5,
    ("cars196", "multisimilarity"): 6.0, ("cars196", "s2sd"): 2.5, ("cars196", "margin"): 6.0,
    ("sop", "multisimilarity"): 0.5, ("sop", "s2sd"): 0.5, ("sop", "margin"): 0.5,
}
OMEGA_SOURCE = {
    "release": "published PLG omega of the release",
    "stand-in": "not published; stand-in until tune_omega.py (see module docstring)",
}
RELEASED = {("cub200", "multisimilarity", "plg"), ("cub200", "s2sd", "plg"),
            ("cars196", "multisimilarity", "plg"), ("cars196", "s2sd", "plg")}
BATCH = {"cub200": 90, "cars196": 112, "sop": 112}


def get_config():
    return {
        "model.backbone": "resnet50.tv_in1k",
        "model.embed_dim": 128,
        "language.encoder": "clip-ViT-B-32",
        "language.plg_classifier": "resnet50.tv_in1k",
        "language.topk": 5,
        "run.epochs": 100,
    }


def get_sweep():
    return {
        "data.name": ["cub200", "cars196", "sop"],
        "loss.name": ["multisimilarity", "margin", "s2sd"],
        "language.guidance": ["none", "elg", "plg"],
        "run.seed": [0, 1, 2],
    }


def derive(trial):
    cell = (trial["data.name"], trial["loss.name"])
    guided = trial["language.guidance"] != "none"
    return {
        "optim.batch_size": BATCH[trial["data.name"]],
        "language.omega": OMEGA[cell] if guided else 0.0,
    }


if __name__ == "__main__":
    import sys

    from langdml_core.sweep import main

    sys.exit(main(__file__))
