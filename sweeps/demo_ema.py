"""Demo: does a moving average of the weights (optim.ema) steady the demo's seeds? Chosen on a VALIDATION split.

The demo's seed-to-seed std of test Recall@1 is 1.8-3.4 points over 4 seeds (2.1-2.5 over 8; issue 13 asks for
at most 1), and the spread is not the test queries' sampling error (results/demo/test_split_size.md): the
trained networks differ. Evaluating an exponential moving average of the weights instead of the last iterate
smooths the end of a short, noisy trajectory at no cost in steps. Here, on the demo's final recipe (the first 36
images of each training class, batch 72, lr 2e-4 for 4 epochs with lr x 0.1 for the last, as sweeps/demo.py),
no language guidance, 5 seeds, on the training classes minus 12 held-out training classes
(data.val_classes=12; 18 steps per epoch, 72 in all): optim.ema in
  0     the last iterate (the demo until now, and the release);
  0.9   an average over about the last 10 steps (about the last half epoch);
  0.97  an average over about the last 33 steps (about the last two epochs).
Rule (fixed before the run): among the settings whose mean last-epoch validation Recall@1 is within 1 point of
the best mean, the smallest std over seeds (ddof 0); ties go to 0 (off). The test split (its first 24 images
per class here) chose nothing.

Command: python sweeps/demo_ema.py      (ran once; its results are committed in results/demo_ema/)
Trials: 15
Cost: about 8 minutes on a 2-core CPU.
"""

NAME = "demo_ema"


def get_config():
    return {
        "data.name": "demo",
        "data.val_classes": 12,
        "data.train_images_per_class": 36,  # as sweeps/demo.py (chosen by sweeps/demo_budget.py)
        "data.test_images_per_class": 24,  # the test split is for the record only here
        "optim.batch_size": 72,
        "optim.lr": 2e-4,
        "optim.milestones": [3],
        "optim.gamma": 0.1,  # the demo's schedule, as in sweeps/demo.py
        "run.epochs": 4,
        "run.memory_format": "channels_last",
        "eval.every": 4,  # validation (and test) once, after the last epoch: the rule reads only that one
        "language.guidance": "none",
        "language.omega": 0.0,
    }


def get_sweep():
    return {
        "optim.ema": [0.0, 0.9, 0.97],
        "run.seed": [0, 1, 2, 3, 4],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
