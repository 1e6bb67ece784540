"""Apply the demo sweeps' validation rule to a sweep's trials and print the table (sweeps/demo_lr.py,
sweeps/demo_spc.py; sweeps/demo_budget.py's has its own script, tests/manual/demo_budget_select.py).

Rule (fixed in each sweep file before its run, as sweeps/demo_schedule.py's): among the setups (the values of the
given keys) whose mean last-epoch validation Recall@1 is within 1 point of the best mean, the smallest std over
seeds (ddof 0, as the report's tables); ties go to the incumbent (the demo's setting when the sweep ran). The test
columns are printed beside it for the record; they choose nothing.

Run: .venv/bin/python tests/manual/validation_select.py results/demo_lr optim.schedule=step optim.lr=2e-4
     .venv/bin/python tests/manual/validation_select.py results/demo_spc data.samples_per_class=2
(the keys are the swept ones, each with the incumbent's value)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from langdml_core.config import parse_value


def seed_stats(frame: pd.DataFrame, keys: list[str], sort: bool = False) -> pd.DataFrame:
    """Per setup (values of the ``keys`` columns): seeds, validation and test Recall@1 in percent (mean, std with
    ddof 0) and the validation values per seed, over the finished trials."""
    ok = frame[frame["status"] == "TERMINATED"]
    stats = ok.groupby(keys, sort=sort).agg(
        seeds=("last/val/recall_at_1", "count"),
        val_mean=("last/val/recall_at_1", "mean"),
        val_std=("last/val/recall_at_1", lambda v: v.std(ddof=0)),
        per_seed=("last/val/recall_at_1", lambda v: ", ".join(f"{100 * x:.2f}" for x in v)),
        test_mean=("last/test/recall_at_1", "mean"),
        test_std=("last/test/recall_at_1", lambda v: v.std(ddof=0)),
    )
    stats[["val_mean", "val_std", "test_mean", "test_std"]] *= 100
    return stats.reset_index()


def select(frame: pd.DataFrame, incumbent: dict) -> tuple[pd.DataFrame, int]:
    keys = [f"cfg.{key}" for key in incumbent]
    stats = seed_stats(frame, keys)
    stats["incumbent"] = (stats[keys] == pd.Series(dict(zip(keys, incumbent.values(), strict=True)))).all(
        axis=1
    )
    eligible = stats[stats["val_mean"] >= stats["val_mean"].max() - 1.0]
    chosen = eligible.sort_values(["val_std", "incumbent"], ascending=[True, False], kind="stable").index[0]
    return stats, chosen


def markdown(stats: pd.DataFrame, chosen: int, incumbent: dict) -> str:
    lines = [
        "| " + " | ".join(incumbent) + " | val R@1 | val R@1 per seed | test R@1 | chosen |",
        "|" + "---|" * (len(incumbent) + 4),
    ]
    for i, row in stats.iterrows():
        values = " | ".join(
            f"{row[f'cfg.{key}']:g}" if isinstance(row[f"cfg.{key}"], float) else str(row[f"cfg.{key}"])
            for key in incumbent
        )
        lines.append(
            f"| {values} | {row['val_mean']:.2f} +- {row['val_std']:.2f} | {row['per_seed']} "
            f"| {row['test_mean']:.2f} +- {row['test_std']:.2f} | {'**yes**' if i == chosen else ''} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    incumbent = {key: parse_value(value) for key, _, value in (arg.partition("=") for arg in sys.argv[2:])}
    stats, chosen = select(pd.read_parquet(folder / "trials.parquet"), incumbent)
    print(markdown(stats, chosen, incumbent))
