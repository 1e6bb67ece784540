"""Apply the rule of sweeps/demo_lr.py to its trials and print the table.

Rule (fixed in the sweep file before its run, as sweeps/demo_schedule.py's): among the setups (schedule x
learning rate) whose mean last-epoch validation Recall@1 is within 1 point of the best mean, the smallest std over
seeds (ddof 0, as the report's tables); ties go to the demo's schedule before it (step, lr 2e-4). The test
columns are printed beside it for the record; they choose nothing.

Run: .venv/bin/python tests/manual/demo_lr_select.py results/demo_lr
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

KEYS = ["cfg.optim.schedule", "cfg.optim.lr"]
INCUMBENT = ("step", 2e-4)  # the demo's schedule when the sweep ran
SCHEDULES = {"step": "lr x 0.1 for the last epoch", "cosine": "9 warm-up steps, then a cosine to 0"}


def select(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    ok = frame[frame["status"] == "TERMINATED"]
    stats = ok.groupby(KEYS, sort=False).agg(
        seeds=("last/val/recall_at_1", "count"),
        val_mean=("last/val/recall_at_1", "mean"),
        val_std=("last/val/recall_at_1", lambda v: v.std(ddof=0)),
        per_seed=("last/val/recall_at_1", lambda v: ", ".join(f"{100 * x:.2f}" for x in v)),
        test_mean=("last/test/recall_at_1", "mean"),
        test_std=("last/test/recall_at_1", lambda v: v.std(ddof=0)),
    )
    stats[["val_mean", "val_std", "test_mean", "test_std"]] *= 100
    stats = stats.reset_index()
    stats["incumbent"] = [(s, lr) == INCUMBENT for s, lr in zip(stats[KEYS[0]], stats[KEYS[1]], strict=True)]
    eligible = stats[stats["val_mean"] >= stats["val_mean"].max() - 1.0]
    chosen = eligible.sort_values(["val_std", "incumbent"], ascending=[True, False], kind="stable").index[0]
    return stats, chosen


def markdown(stats: pd.DataFrame, chosen: int) -> str:
    lines = [
        "| schedule | lr | val R@1 | val R@1 per seed | test R@1 | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for i, row in stats.iterrows():
        lines.append(
            f"| {row[KEYS[0]]} ({SCHEDULES[row[KEYS[0]]]}) | {row[KEYS[1]]:g} "
            f"| {row['val_mean']:.2f} +- {row['val_std']:.2f} | {row['per_seed']} "
            f"| {row['test_mean']:.2f} +- {row['test_std']:.2f} | {'**yes**' if i == chosen else ''} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo_lr")
    stats, chosen = select(pd.read_parquet(folder / "trials.parquet"))
    print(markdown(stats, chosen))
