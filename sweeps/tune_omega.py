"""Tune omega and the temperature of the language term for one Table 1 cell, without touching the test set.

Phase 1 (search): Optuna's TPE proposes (omega, temperature) pairs; each trains on the training classes
minus a CLASS-DISJOINT validation split (data.val_classes whole classes) and is scored by val/recall_at_1;
ASHA stops weak proposals early (rungs at 5, 15, 45 epochs). No Repeater: repeats and early stopping do not
mix, so seeds are spent on phase 2.
Phase 2 (retrain): the best proposal (among those trained to the last epoch) is retrained on ALL training
classes over 3 seeds and reported like any sweep; results/tune_omega/best.json holds the chosen values.

One cell per run, default cub200 / multisimilarity / elg; others with --set, e.g.
    python sweeps/tune_omega.py --set data.name=cars196 --set loss.name=margin --set language.guidance=plg
Then copy the tuned omega into sweeps/table1.py OMEGA (and mark its OMEGA_SOURCE "tuned").

Trials: 27
Cost: 24 proposals, most stopped at 5 or 15 of 45 epochs, plus 3 x 100-epoch retrains: about 1.5x a Table 1
cell's GPU-hours.
"""

NAME = "tune_omega"

VAL_CLASSES = {"cub200": 20, "cars196": 20, "sop": 2000}  # about 20% of the training classes
BATCH = {"cub200": 90, "cars196": 112, "sop": 112}


def get_config():
    return {
        "model.backbone": "resnet50.tv_in1k",
        "model.embed_dim": 128,
        "language.encoder": "clip-ViT-B-32",
        "language.plg_classifier": "resnet50.tv_in1k",
        "language.topk": 5,
        "run.epochs": 45,
    }


def get_sweep():
    return {
        "data.name": ["cub200"],
        "loss.name": ["multisimilarity"],
        "language.guidance": ["elg"],
    }


def derive(trial):
    return {
        "data.val_classes": VAL_CLASSES.get(trial["data.name"], 0),
        "optim.batch_size": BATCH.get(trial["data.name"], 90),
    }


def get_search():
    return {
        "space": {
            "language.omega": ["loguniform", 0.1, 20.0],
            "language.temperature": ["loguniform", 0.25, 4.0],
        },
        "metric": "val/recall_at_1",
        "mode": "max",
        "samples": 24,
        "grace_period": 5,
        "reduction_factor": 3,
        "final": {"data.val_classes": 0, "run.epochs": 100},
        "final_seeds": [0, 1, 2],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.sweep import main

    sys.exit(main(__file__))
