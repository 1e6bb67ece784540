"""Apply the rule of sweeps/demo_budget.py / demo_budget3.py to a sweep's trials and print the table.

Rule (fixed in the sweep files before their runs): among the setups (training images per class x epochs) whose
mean last-epoch validation Recall@1 is within 1 point of the best mean, the smallest std over seeds (ddof 0, as
the report's tables); ties go to the cheaper (fewer training steps). The test columns are printed beside it for
the record; they choose nothing.

Run: .venv/bin/python tests/manual/demo_budget_select.py results/demo_budget3
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from validation_select import seed_stats  # beside this script

KEYS = ["cfg.data.train_images_per_class", "cfg.run.epochs"]
BATCH, CLASSES = 72, 48  # the demo's batch and training classes: a setup's steps in the demo itself


def select(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    stats = seed_stats(frame, KEYS, sort=True)
    stats["steps"] = (stats[KEYS[0]] * CLASSES * stats[KEYS[1]] / BATCH).round().astype(int)
    eligible = stats[stats["val_mean"] >= stats["val_mean"].max() - 1.0]
    chosen = eligible.sort_values(["val_std", "steps"], kind="stable").index[0]
    return stats, chosen


def markdown(stats: pd.DataFrame, chosen: int) -> str:
    lines = [
        f"| train images per class | epochs | steps at {CLASSES} classes | val R@1 | val R@1 per seed | test R@1 | chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, row in stats.iterrows():
        lines.append(
            f"| {int(row[KEYS[0]])} | {int(row[KEYS[1]])} | {int(row['steps'])} "
            f"| {row['val_mean']:.2f} +- {row['val_std']:.2f} | {row['per_seed']} "
            f"| {row['test_mean']:.2f} +- {row['test_std']:.2f} | {'**yes**' if i == chosen else ''} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo_budget3")
    stats, chosen = select(pd.read_parquet(folder / "trials.parquet"))
    print(markdown(stats, chosen))
