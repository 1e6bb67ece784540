"""Demo: the embedded default main job (no downloads, CPU).

Demo dataset (rendered compositional objects) x guidance {none, elg, plg} x losses {multisimilarity, margin},
EfficientNet-Lite0 (packaged ImageNet weights) at 64 px, MiniLM text encoder, one seed.

Command: python sweeps/demo.py        (or: make demo; langdml sweep sweeps/demo.py)
Trials: 6
Cost: about 8 minutes on a 2-core CPU (2 trials at a time, 1 CPU each).
"""

NAME = "demo"


def get_config():
    return {
        "data.name": "demo",
        "optim.lr": 1e-4,  # the demo schedule is short; 1e-5 (the paper's) barely moves in 5 epochs
        "run.epochs": 5,
        "language.omega": 1.0,
    }


def get_sweep():
    return {
        "loss.name": ["multisimilarity", "margin"],
        "language.guidance": ["none", "elg", "plg"],
    }


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
