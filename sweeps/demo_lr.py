"""Demo: a higher learning rate, or a cosine decay after every step, for steadier seeds? On a VALIDATION split.

Issue 13 asks for a seed-to-seed std of test Recall@1 of at most 1 point; the demo's is 1.5-2.0 over 8 seeds
(results/demo_seeds/pooled.md), and results/demo_variance/sources.md measured why: in 120 steps any change to
what the network sees moves where training ends by about a point. More steps lowered the spread
(sweeps/demo_budget.py: 48 x 5), but the 10-minute budget has no more of them. This sweep asks whether the same
steps can go further: sweeps/demo_schedule.py found lr 2e-4 far better than 1e-4 (test +6 points) and tried
nothing higher, and it decayed the learning rate only once, by epoch. Compared here, at the demo's budget (the
first 36 images of each training class, 5 epochs, batch 72, as sweeps/demo.py):
  step    lr 2e-4 or 4e-4, lr x 0.1 for the last epoch (2e-4: the demo now);
  cosine  lr 2e-4, 4e-4 or 8e-4, half an epoch of linear warm-up (optim.warmup_steps 9), then half a cosine
          down towards 0 after every step (optim.schedule=cosine).
No language guidance, 5 seeds, on the training classes minus 12 held-out training classes (data.val_classes=12:
36 classes, 18 steps per epoch, 90 in all).

Rule (fixed before the run, as sweeps/demo_schedule.py's): among the setups whose mean last-epoch validation
Recall@1 is within 1 point of the best mean, the smallest std over seeds (ddof 0); ties go to the demo's current
schedule (step, 2e-4). The test split (its first 24 images per class here) chose nothing.

Command: python sweeps/demo_lr.py      (ran once; its results are committed in results/demo_lr/)
Trials: 25
Cost: about 13 minutes on a 2-core CPU.
"""

NAME = "demo_lr"
WARMUP_STEPS = 9  # half an epoch of the 36 classes' 18 steps


def get_config():
    return {
        "data.name": "demo",
        "data.val_classes": 12,
        "data.train_images_per_class": 36,  # as sweeps/demo.py (chosen by sweeps/demo_budget3.py)
        "data.test_images_per_class": 24,  # the test split is for the record only here
        "optim.batch_size": 72,
        "run.epochs": 5,
        "run.memory_format": "channels_last",
        "eval.every": 5,  # validation (and test) once, after the last epoch: the rule reads only that one
        "language.guidance": "none",
        "language.omega": 0.0,
    }


def get_sweep():
    return {
        "optim.schedule": ["step", "cosine"],
        "optim.lr": [2e-4, 4e-4, 8e-4],
        "run.seed": [0, 1, 2, 3, 4],
    }


def keep(trial):
    return trial["optim.schedule"] == "cosine" or trial["optim.lr"] < 8e-4


def derive(trial):
    if trial["optim.schedule"] == "step":  # the demo's: lr x 0.1 for the last epoch
        return {"optim.milestones": [4], "optim.gamma": 0.1}
    return {"optim.warmup_steps": WARMUP_STEPS}


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
