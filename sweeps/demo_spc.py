"""Demo: more images of each class per batch (data.samples_per_class) for steadier seeds? On a VALIDATION split.

Issue 13 asks for a seed-to-seed std of test Recall@1 of at most 1 point; the demo's is 1.5-2.0 over 8 seeds
(results/demo_seeds/pooled.md), and in its 120 steps any change to what the network sees moves where training
ends by about a point (results/demo_variance/sources.md). The demo's batches hold 36 classes x 2 images (the
release's samples_per_class), so multisimilarity sees 36 positive pairs among 2,556 in a batch. More images per
class give each batch more positive pairs at the same cost (the epoch keeps its 18 steps here), which may steady
the gradient. Compared here, on the demo's recipe (the first 36 images of each training class, batch 72, lr 2e-4
for 5 epochs with lr x 0.1 for the last, as sweeps/demo.py), no language guidance, 5 seeds, on the training
classes minus 12 held-out training classes (data.val_classes=12: 36 classes, 18 steps per epoch):
  data.samples_per_class 2 (36 classes per batch: the demo now, and the release), 4 (18) or 8 (9).

Rule (fixed before the run, as sweeps/demo_schedule.py's): among the setups whose mean last-epoch validation
Recall@1 is within 1 point of the best mean, the smallest std over seeds (ddof 0); ties go to 2. The test split
(its first 24 images per class here) chose nothing.

Command: python sweeps/demo_spc.py      (ran once; its results are committed in results/demo_spc/)
Trials: 15
Cost: about 8 minutes on a 2-core CPU.
"""

NAME = "demo_spc"


def get_config():
    return {
        "data.name": "demo",
        "data.val_classes": 12,
        "data.train_images_per_class": 36,  # as sweeps/demo.py (chosen by sweeps/demo_budget3.py)
        "data.test_images_per_class": 24,  # the test split is for the record only here
        "optim.batch_size": 72,
        "optim.lr": 2e-4,
        "optim.milestones": [4],
        "optim.gamma": 0.1,  # the demo's schedule, as in sweeps/demo.py
        "run.epochs": 5,
        "run.memory_format": "channels_last",
        "eval.every": 5,  # validation (and test) once, after the last epoch: the rule reads only that one
        "language.guidance": "none",
        "language.omega": 0.0,
    }


def get_sweep():
    return {
        "data.samples_per_class": [2, 4, 8],
        "run.seed": [0, 1, 2, 3, 4],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
