"""Apply sweeps/demo_schedule.py's rule to its results and write results/demo_schedule/selected.md.

Rule (fixed before the run): among the schedules whose mean last-epoch validation Recall@1 is within 1 point
of the best mean, the one with the smallest std over seeds (ddof=0, as the report's tables); ties go to the
cheaper (fewer epochs). The test
columns are printed beside it for the record; they choose nothing.

Run: .venv/bin/python tests/manual/demo_schedule_select.py [results/demo_schedule]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

KEYS = ["cfg.optim.lr", "cfg.run.epochs", "cfg.optim.gamma"]


def select(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    ok = frame[frame["status"] == "TERMINATED"]
    stats = ok.groupby(KEYS, sort=False).agg(
        seeds=("last/val/recall_at_1", "count"),
        val_mean=("last/val/recall_at_1", "mean"),
        val_std=("last/val/recall_at_1", lambda v: v.std(ddof=0)),
        test_mean=("last/test/recall_at_1", "mean"),
        test_std=("last/test/recall_at_1", lambda v: v.std(ddof=0)),
    )
    stats[["val_mean", "val_std", "test_mean", "test_std"]] *= 100
    stats = stats.reset_index()
    eligible = stats[stats["val_mean"] >= stats["val_mean"].max() - 1.0]
    chosen = eligible.sort_values(["val_std", "cfg.run.epochs"], kind="stable").index[0]
    return stats, chosen


def markdown(stats: pd.DataFrame, chosen: int) -> str:
    lines = [
        "Rule: among the schedules whose mean last-epoch val/recall_at_1 is within 1 point of the best mean, the "
        "smallest std over seeds (ddof=0, as the tables; ties: fewer epochs). Test columns are for the record only; they chose nothing.",
        "",
        "| optim.lr | run.epochs | lr x 0.1 after epoch 4 | seeds | val R@1 | test R@1 | chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, row in stats.iterrows():
        lines.append(
            f"| {row['cfg.optim.lr']:g} | {int(row['cfg.run.epochs'])} | {'yes' if row['cfg.optim.gamma'] != 1 else 'no'} "
            f"| {int(row['seeds'])} | {row['val_mean']:.2f} +- {row['val_std']:.2f} "
            f"| {row['test_mean']:.2f} +- {row['test_std']:.2f} | {'**yes**' if i == chosen else ''} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo_schedule")
    stats, chosen = select(pd.read_parquet(folder / "trials.parquet"))
    text = markdown(stats, chosen)
    (folder / "selected.md").write_text(text)
    print(text)
