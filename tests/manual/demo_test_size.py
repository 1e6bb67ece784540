"""Does a larger test split make the demo's seed-to-seed spread small? (issue 13: std of test Recall@1 <= 1)

Re-evaluates every trial of a finished demo sweep (its newest Tune checkpoint) on the demo's own test split
(24 images per class; "24+0" must reproduce the sweep's table: a check of the loading) and on that split
enlarged by N freshly rendered images of each of the 48 test classes (default N = 24, 48, 72; images the
training never saw, drawn with their own random streams), so each larger split contains the smaller ones.
Prints per guidance setting the mean +- std over seeds of test Recall@1 in percent (ddof 0 as the demo's
table, and ddof 1).

    .venv/bin/python sweeps/demo.py --results /tmp/demo1
    .venv/bin/python tests/manual/demo_test_size.py /tmp/demo1/ray/demo 24 48 72

Results: results/demo/test_split_size.md.
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
from langdml_core.runner.language_effect import nearest_hits
from langdml_core.runner.tune import resume_from_tune
from langdml_core.train import speed_options


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
    own = build_dataset(TrialConfig.from_dict({"data.name": "demo"}).data).test  # reproduces the sweep
    sets = {0: own}
    for n in sizes:  # the demo's own 24 images per class plus n fresh ones
        fresh = fresh_test_split(n)
        assert fresh.class_ids == own.class_ids, (fresh.class_ids, own.class_ids)
        sets[n] = ImageSet(
            "test",
            np.concatenate([own.labels, fresh.labels]),
            own.class_texts,
            own.class_ids,
            images=np.concatenate([own.images, fresh.images]),
        )
    results: dict[tuple[str, int], list[float]] = {}
    hits: dict[str, list[np.ndarray]] = {}
    for folder in sorted(p for p in experiment.iterdir() if p.is_dir() and "_seed=" in p.name):
        name = next(n for n in trials if folder.name.startswith(n.replace("/", "_") + "_"))
        config = TrialConfig.from_dict(trials[name]["config"])
        state = resume_from_tune(None, (pyarrow.fs.LocalFileSystem(), str(folder)))
        model = build_model(config.model).to(memory_format=speed_options(config, torch.device("cpu"))[1])
        model.load_state_dict(state["model"])
        model.eval()
        norm = model.data_config
        transform = eval_transform(64, norm["mean"], norm["std"], norm["interpolation"])
        for n, split in sets.items():
            emb, lab = embed(model, eval_loader(split, transform, batch_size=256), torch.device("cpu"))
            r1 = 100 * retrieval_metrics(emb, lab, ks=[1], nmi=False)["recall_at_1"]
            results.setdefault((trials[name]["varied"].get("language.guidance"), n), []).append(r1)
            print(name, n, f"{r1:.2f}", flush=True)
            if n == 0:
                hits.setdefault(trials[name]["varied"].get("language.guidance"), []).append(
                    100.0 * nearest_hits(np.asarray(emb), np.asarray(lab))
                )
    for (guidance, n), values in sorted(results.items()):
        seeds = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"{guidance:5s} 24+{n:3d}: {np.mean(values):.2f} +- {np.std(values):.2f} (ddof 0; ddof 1: {np.std(values, ddof=1):.2f})  [{seeds}]"
        )
    for guidance, per_seed in sorted(hits.items()):  # on the own split: how much of the spread is per query
        h = np.stack(per_seed)
        print(
            f"{guidance:5s} own split: variance of the seed means {h.mean(1).var(ddof=1):.2f} points^2, of which "
            f"independent per-query flips would give {h.var(0, ddof=1).mean() / h.shape[1]:.2f}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(x) for x in (sys.argv[2:] or ["24", "48", "72"])])
