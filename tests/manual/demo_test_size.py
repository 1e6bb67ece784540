"""Does a larger test split make the demo's seed-to-seed spread small? (issue 13: std of test Recall@1 <= 1)

Re-evaluates every trial of a finished demo sweep (its newest Tune checkpoint) on the first N images of each
of the demo's 48 test classes (default N = 24, 48, 72, 96; the demo's test split has 96, so N = 96 must
reproduce the sweep's table: a check of the loading), so each larger split contains the smaller ones.
Prints per guidance setting the mean +- std over seeds of test Recall@1 in percent (ddof 0 as the demo's
table, and ddof 1), and how much of the variance of a setup's seed mean independent per-query flips explain.

    .venv/bin/python sweeps/demo.py --results /tmp/demo1
    .venv/bin/python tests/manual/demo_test_size.py /tmp/demo1/ray/demo 24 48 72 96

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
from langdml_core.data import build_dataset, eval_loader
from langdml_core.data.transforms import eval_transform
from langdml_core.evaluate import embed, retrieval_metrics
from langdml_core.runner.language_effect import nearest_hits
from langdml_core.runner.tune import resume_from_tune
from langdml_core.train import speed_options


def main(experiment: Path, sizes: list[int]) -> None:
    torch.set_num_threads(2)
    trials = json.loads((experiment / "langdml_trials.json").read_text())
    own = build_dataset(TrialConfig.from_dict({"data.name": "demo"}).data).test  # as the sweep evaluated it
    sets = {n: own.first_per_class(n) for n in sizes}
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
            if n == max(sizes):
                hits.setdefault(trials[name]["varied"].get("language.guidance"), []).append(
                    100.0 * nearest_hits(np.asarray(emb), np.asarray(lab))
                )
    for (guidance, n), values in sorted(results.items()):
        seeds = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"{guidance:5s} {n:3d} per class: {np.mean(values):.2f} +- {np.std(values):.2f} (ddof 0; ddof 1: {np.std(values, ddof=1):.2f})  [{seeds}]"
        )
    # On the largest split: how much of the spread is per query.
    for guidance, per_seed in sorted(hits.items()):
        h = np.stack(per_seed)
        print(
            f"{guidance:5s} {max(sizes)} per class: variance of the seed means {h.mean(1).var(ddof=1):.2f} points^2, of which "
            f"independent per-query flips would give {h.var(0, ddof=1).mean() / h.shape[1]:.2f}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(x) for x in (sys.argv[2:] or ["24", "48", "72", "96"])])
