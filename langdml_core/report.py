"""Sweep results -> ``trials.parquet`` (one row per trial) and ``table.md`` (mean +- std over seeds).

Three model-selection protocols are reported side by side and named: the last epoch, the best TEST epoch
per metric (what the paper's release did), and, when a validation split exists, the epoch with the best
validation Recall@1.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

HEADLINE = ("test/recall_at_1", "test/map_at_r", "test/map_at_1000", "test/nmi")


def trial_rows(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Flatten per-trial records (name, varied, status, history) into one row per trial."""
    rows = []
    for record in records:
        row: dict[str, Any] = {
            "trial": record["name"],
            "status": record["status"],
            "error": record.get("error", ""),
        }
        row.update({f"cfg.{k}": _scalar(v) for k, v in record["varied"].items()})
        evaluated = [h for h in record["history"] if _finite(h.get("test/recall_at_1"))]
        row["epochs"] = max((int(h["epoch"]) for h in record["history"] if "epoch" in h), default=0)
        if evaluated:
            last = evaluated[-1]
            metrics = sorted(k for k in last if k.startswith(("test/", "val/")) and _finite(last[k]))
            for key in metrics:
                row[f"last/{key}"] = float(last[key])
                row[f"best_test_epoch/{key}"] = max(float(h[key]) for h in evaluated if _finite(h.get(key)))
            if any(_finite(h.get("val/recall_at_1")) for h in evaluated):
                chosen = max(evaluated, key=lambda h: (h.get("val/recall_at_1", -1), -h["epoch"]))
                for key in metrics:
                    if key.startswith("test/"):
                        row[f"val_selected/{key}"] = float(chosen[key])
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(frame: pd.DataFrame, paper: pd.DataFrame | None = None) -> str:
    """Markdown: one line per setup (varied keys except the seed), mean +- std over seeds."""
    setup = [c for c in frame.columns if c.startswith("cfg.") and c != "cfg.run.seed"]
    protocols = [p for p in ("last", "best_test_epoch", "val_selected") if f"{p}/test/recall_at_1" in frame]
    metrics = [m for m in HEADLINE if f"last/{m}" in frame]
    header = [c.removeprefix("cfg.") for c in setup] + ["seeds", "failed"]
    header += [f"{m.removeprefix('test/')} ({p})" for m in metrics for p in protocols]
    with_paper = paper is not None and {"cfg.data.name", "cfg.loss.name"} <= set(frame.columns)
    if with_paper:
        header += ["paper R@1", "diff (best_test_epoch)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = frame.groupby(setup, sort=False, dropna=False) if setup else [((), frame)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        ok = group[group["status"] == "TERMINATED"]
        cells = [str(k) for k in key] + [str(len(ok)), str(len(group) - len(ok))]
        for m in metrics:
            for p in protocols:
                cells.append(_mean_std(ok.get(f"{p}/{m}")))
        if with_paper:
            ref = _paper_value(paper, dict(zip(setup, key, strict=True)))
            ours = ok.get("best_test_epoch/test/recall_at_1")
            cells.append("" if ref is None else f"{ref:.1f}")
            cells.append(
                "" if ref is None or ours is None or ours.empty else f"{100 * ours.mean() - ref:+.1f}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(sweep, records: list[dict[str, Any]], out_dir: Path) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    order = {trial.name: i for i, trial in enumerate(sweep.trials)}
    frame = trial_rows(sorted(records, key=lambda r: order.get(r["name"], len(order))))
    frame.to_parquet(out_dir / "trials.parquet", index=False)
    table = summary_table(frame, paper_results())
    text = (
        f"# {sweep.name}\n\nSweep file: `{Path(sweep.path).name}`; {len(frame)} trials. Metrics in percent "
        "(like the paper), mean +- std over seeds. Protocols: last = last epoch; best_test_epoch = per metric the best "
        "epoch on the TEST split (the paper's release protocol, optimistic); val_selected = test metrics at the "
        "epoch with the best validation recall_at_1 (only with data.val_classes).\n\n" + table + "\n"
    )
    (out_dir / "table.md").write_text(text)
    write_plots(sweep, records, frame, out_dir)
    return text


def write_plots(sweep, records: list[dict[str, Any]], frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """curves.png (every trial's test curve and loss) and one PNG per entry of the sweep file's PLOTS."""
    from langdml_core import plots

    written = [plots.training_curves(records, out_dir / "curves.png")]
    for spec in getattr(sweep.module, "PLOTS", []):
        name = spec["x"].rsplit(".", 1)[-1]
        written.append(
            plots.hyperparameter_curve(frame, spec["x"], spec.get("lines", []), out_dir / f"{name}.png")
        )
    return [p for p in written if p is not None]


def paper_results() -> pd.DataFrame:
    with resources.files("langdml_core.resources").joinpath("paper_results.csv").open() as f:
        return pd.read_csv(f)


def _paper_value(paper: pd.DataFrame, setup: dict[str, Any]) -> float | None:
    guidance = setup.get("cfg.language.guidance", "none")
    rows = paper[
        (paper["table"] == "table1")
        & (paper["dataset"] == setup.get("cfg.data.name"))
        & (paper["loss"] == setup.get("cfg.loss.name"))
        & (paper["guidance"] == guidance)
        & (paper["metric"] == "recall@1")
    ]
    return float(rows["mean"].iloc[0]) if len(rows) else None


def _mean_std(values) -> str:
    if values is None:
        return ""
    values = values.dropna()
    if values.empty:
        return ""
    values = 100 * values  # fractions in trials.parquet, percent in the table (the paper's unit)
    return f"{values.mean():.2f} +- {values.std(ddof=0):.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else str(value)
