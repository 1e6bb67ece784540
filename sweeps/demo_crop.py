"""Demo: a milder training crop (data.crop_scale) for steadier seeds? On a VALIDATION split.

Issue 13 asks for a seed-to-seed std of test Recall@1 of at most 1 point; the demo's is 1.13 / 1.13 / 0.79 over
8 seeds (none / ELG / PLG, results/demo_seeds/pooled.md), and the augmentation's random stream alone moves the
result by about a point (results/demo_variance/sources.md). The release's RandomResizedCrop keeps between 8% and
100% of an image's area. That suits CUB, where the bird fills much of the photo; a demo object covers about 9-36%
of its image (radius 0.17-0.34 of the side, anywhere in it, beside two distractor shapes), so a small crop often
shows background or a distractor under the object's label. Compared here, on the demo's recipe (the first 36
images of each training class, batch 72 of 4 images per class, lr 2e-4 for 5 epochs with lr x 0.1 for the last,
as sweeps/demo.py), no language guidance, 5 seeds, on the training classes minus 12 held-out training classes
(data.val_classes=12):
  data.crop_scale 0.08 (the release, the demo now), 0.25, 0.5 or 1.0 (the whole area; aspect jitter and flip stay).

Rule (fixed before the run, as sweeps/demo_spc.py's): among the setups whose mean last-epoch validation Recall@1
is within 1 point of the best mean, the smallest std over seeds (ddof 0); ties go to 0.08. The test split (its
first 24 images per class here) chose nothing.

Command: python sweeps/demo_crop.py      (ran once; its results are committed in results/demo_crop/)
Trials: 20
Cost: about 10 minutes on a 2-core CPU.
"""

NAME = "demo_crop"


def get_config():
    return {
        "data.name": "demo",
        "data.val_classes": 12,
        "data.train_images_per_class": 36,  # as sweeps/demo.py (chosen by sweeps/demo_budget3.py)
        "data.test_images_per_class": 24,  # the test split is for the record only here
        "data.samples_per_class": 4,  # as sweeps/demo.py (chosen by sweeps/demo_spc.py)
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
        "data.crop_scale": [0.08, 0.25, 0.5, 1.0],
        "run.seed": [0, 1, 2, 3, 4],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
