"""Tune omega and the temperature of the language term for one Table 1 cell, without touching the test set.

The cell keeps its recipe (langdml_core/paper.py; default cub200 / multisimilarity / elg: 128-d, 200 epochs,
batch 90): only omega and the temperature are searched, over the cell's full schedule.
Phase 1 (search): Optuna's TPE proposes (omega, temperature) pairs; each trains on the training classes
minus a CLASS-DISJOINT validation split (data.val_classes whole classes) and is scored by val/recall_at_1;
ASHA stops weak proposals early (rungs at 5, 15, 45, 135 epochs). No Repeater: repeats and early stopping do
not mix, so seeds are spent on phase 2.
Phase 2 (retrain): the best proposal (among those trained to the last epoch) is retrained on ALL training
classes over 3 seeds and reported like any sweep; results/tune_omega/best.json holds the chosen values.

One cell per run; others with --set, e.g.
    python sweeps/tune_omega.py --set data.name=cars196 --set loss.name=margin --set language.guidance=plg
Then put the tuned omega into langdml_core/paper.py with its source ("tuned: results/tune_omega/best.json").

Trials: 27
Cost: 24 proposals, most stopped at 5 or 15 epochs, about one reaching each of 45, 135 and 200, plus 3
x 200-epoch retrains: about 1,000 epochs, 1.7x a Table 1 cell's GPU-hours (about 11 GPU-hours for CUB200).
"""

from langdml_core import paper

NAME = "tune_omega"

VAL_CLASSES = {"cub200": 20, "cars196": 20, "sop": 2000}  # about 20% of the training classes


def get_config():
    return {}


def get_sweep():
    return {
        "data.name": ["cub200"],
        "loss.name": ["multisimilarity"],
        "language.guidance": ["elg"],
    }


def derive(trial):
    cell = paper.recipe(trial["data.name"], 128, trial["loss.name"], trial["language.guidance"])
    return {**cell, "data.val_classes": VAL_CLASSES[trial["data.name"]]}


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
        "final": {"data.val_classes": 0},
        "final_seeds": [0, 1, 2],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
