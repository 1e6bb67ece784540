"""Demo, five more seeds: how large is the seed spread of the demo's recipe, and what do 8 seeds say?

Exactly sweeps/demo.py (its config, its validation-chosen omega and temperature) on seeds 3-7, which the demo
does not run. Together with the demo's seeds 0-2 this gives 8 seeds per setup: a steadier estimate of each
setup's seed-to-seed std (issue 13 asks for <= 1 point) and of the paired differences. Its table also
compares these 5 seeds with the committed demo reference (results/demo: mean within +- 2 std per setup),
a check of that reference against seeds it never saw. Its earlier runs are in the git history of
results/demo_seeds/: seeds 3-7 of the demo with the release's crop (8-100% of the area, until 2026-12-08), before
that with 2 images per class per batch, and before that seeds 4-7 of the demo's 4 seeds of 36 images x 4 epochs.

Command: python sweeps/demo_seeds.py --results results      (ran once; results/demo_seeds/)
Trials: 15
Cost: about 12 minutes on a 2-core CPU (5/3 of the demo; 10 min 40 s on 2026-12-07, 13 min 10 s on 2026-12-08).
"""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("langdml_sweep_demo", Path(__file__).with_name("demo.py"))
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

NAME = "demo_seeds"
REFERENCE = demo.REFERENCE
assert "3 seeds per setup" in demo.PROTOCOL, "sweeps/demo.py's PROTOCOL no longer names its seeds"
PROTOCOL = demo.PROTOCOL.replace("3 seeds per setup", "seeds 3-7 (the demo runs 0-2)")
get_config = demo.get_config
derive = demo.derive


def get_sweep():
    return {"language.guidance": ["none", "elg", "plg"], "run.seed": [3, 4, 5, 6, 7]}


if __name__ == "__main__":
    import sys

    from langdml_core.runner.cli import sweep_main

    sys.exit(sweep_main(__file__))
