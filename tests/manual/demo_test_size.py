"""Does a larger test split make the demo's seed-to-seed spread small? (issue 13: std of test Recall@1 <= 1)

Re-evaluates every trial of a finished demo sweep (its newest Tune checkpoint) on freshly rendered images of
the 48 test classes, N per class (default 24, 48 and 96; images the training never saw, drawn with their own
random streams), and on the demo's own test split (N = 0, which must reproduce the sweep's table: a check of
the loading). Prints per guidance setting the mean +- std over seeds of test Recall@1 in percent.

    .venv/bin/python sweeps/demo.py --results /tmp/demo1
    .venv/bin/python tests/manual/demo_test_size.py /tmp/demo1/ray/demo 24 48 96

Result of 2026-12-02: results/demo/test_split_size.md.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.fs
import torch

from langdml_core.backbones import build_model
from langdml_core.config import TrialConfig
from langdml_core.data import build_dataset, demo, eval_loader
from langdml_core.data.base import ImageSet
from langdml_core.data.transforms import eval_transform
from langdml_core.evaluate import embed, retrieval_metrics
from langdml_core.runner.tune import resume_from_tune


def fresh_test_split(n: int) -> ImageSet:
    """n fresh images of each of the demo's 48 test classes (random streams the generator never used)."""
    classes = demo.class_table()
    test_ids = [i for i, c in enumerate(classes) if not demo.is_train_class(*c)]
    images, labels = [], []
    for j, c in enumerate(test_ids):
        for k in range(n):
            images.append(demo.render(*classes[c], np.random.default_rng([0, demo.VERSION, c, 10_000 + k])))
            labels.append(j)
    return ImageSet(
        name="test",
        labels=np.array(labels),
        class_texts=[demo.class_name(*classes[c]) for c in test_ids],
        class_ids=list(test_ids),
        images=np.stack(images),
    )


def main(experiment: Path, sizes: list[int]) -> None:
    torch.set_num_threads(2)
    trials = json.loads((experiment / "langdml_trials.json").read_text())
    sets = {n: fresh_test_split(n) for n in sizes}
    sets[0] = build_dataset(TrialConfig.from_dict({"data.name": "demo"}).data).test  # reproduces the sweep
    results: dict[tuple[str, int], list[float]] = {}
    for folder in sorted(p for p in experiment.iterdir() if p.is_dir() and "_seed=" in p.name):
        name = next(n for n in trials if folder.name.startswith(n.replace("/", "_") + "_"))
        config = TrialConfig.from_dict(trials[name]["config"])
        state = resume_from_tune(None, (pyarrow.fs.LocalFileSystem(), str(folder)))
        model = build_model(config.model)
        model.load_state_dict(state["model"])
        model.eval()
        norm = model.data_config
        transform = eval_transform(64, norm["mean"], norm["std"], norm["interpolation"])
        for n, split in sets.items():
            emb, lab = embed(model, eval_loader(split, transform, batch_size=256), torch.device("cpu"))
            r1 = 100 * retrieval_metrics(emb, lab, ks=[1], nmi=False)["recall_at_1"]
            results.setdefault((trials[name]["varied"].get("language.guidance"), n), []).append(r1)
            print(name, n, f"{r1:.2f}", flush=True)
    for (guidance, n), values in sorted(results.items()):
        seeds = ", ".join(f"{v:.2f}" for v in values)
        print(f"{guidance:5s} n={n:3d}: {np.mean(values):.2f} +- {np.std(values, ddof=1):.2f}  [{seeds}]")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(x) for x in (sys.argv[2:] or ["24", "48", "96"])])
