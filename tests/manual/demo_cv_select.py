"""Apply a cross-validated demo sweep's rule (sweeps/demo_batch_cv.py) and print the tables of its selected.md.

Rule (fixed in the sweep file before the run): a setup's validation mean is the mean last-epoch validation
Recall@1 over all its trials (folds x seeds); its spread is the mean over folds of the std over seeds (ddof 0),
so that a fold's difficulty does not count as seed noise. Among the setups within 1 point of the best mean, the
smallest spread; ties go to the first setup in the sweep's order (the demo as it is). Test columns are printed
beside it for the record; they choose nothing.

Run: .venv/bin/python tests/manual/demo_cv_select.py [results/demo_batch_cv] [cfg.optim.batch_size]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

FOLD = "cfg.data.val_fold"
SEED = "cfg.run.seed"


VAL, TEST = "last/val/recall_at_1", "last/test/recall_at_1"


def std0(values: pd.Series) -> float:
    return values.std(ddof=0)


def per_fold(ok: pd.DataFrame, key: str) -> pd.DataFrame:
    """Mean and std (ddof 0) over seeds, in percent, for each setup and fold."""
    out = ok.groupby([key, FOLD], sort=False).agg(
        seeds=(VAL, "count"),
        val_mean=(VAL, "mean"),
        val_std=(VAL, std0),
        test_mean=(TEST, "mean"),
        test_std=(TEST, std0),
    )
    out[["val_mean", "val_std", "test_mean", "test_std"]] *= 100
    return out.reset_index()


def select(frame: pd.DataFrame, key: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    ok = frame[frame["status"] == "TERMINATED"]
    folds = per_fold(ok, key)
    spreads = folds.groupby(key, sort=False).agg(
        val_spread=("val_std", "mean"), test_spread=("test_std", "mean")
    )
    means = ok.groupby(key, sort=False).agg(
        trials=(SEED, "count"), val_mean=(VAL, "mean"), test_mean=(TEST, "mean")
    )
    means[["val_mean", "test_mean"]] *= 100
    setups = spreads.join(means).reset_index()
    eligible = setups[setups["val_mean"] >= setups["val_mean"].max() - 1.0]
    chosen = eligible.sort_values("val_spread", kind="stable").index[0]
    return folds, setups, chosen


def markdown(folds: pd.DataFrame, setups: pd.DataFrame, chosen: int, key: str) -> str:
    name = key.removeprefix("cfg.")
    lines = [
        f"| {name} | trials | val R@1 (mean over folds x seeds) | val spread (mean over folds of the std over seeds) "
        "| test R@1 | test spread | chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in setups.iterrows():
        lines.append(
            f"| {r[key]:g} | {int(r['trials'])} | {r['val_mean']:.2f} | {r['val_spread']:.2f} | {r['test_mean']:.2f} "
            f"| {r['test_spread']:.2f} | {'**yes**' if i == chosen else ''} |"
        )
    lines += ["", f"| {name} | fold | seeds | val R@1 | test R@1 |", "|---|---|---|---|---|"]
    for _, r in folds.iterrows():
        lines.append(
            f"| {r[key]:g} | {int(r[FOLD])} | {int(r['seeds'])} | {r['val_mean']:.2f} +- {r['val_std']:.2f} "
            f"| {r['test_mean']:.2f} +- {r['test_std']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo_batch_cv")
    key = sys.argv[2] if len(sys.argv) > 2 else "cfg.optim.batch_size"
    folds, setups, chosen = select(pd.read_parquet(folder / "trials.parquet"), key)
    print(markdown(folds, setups, chosen, key))
