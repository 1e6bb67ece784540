"""PNG plots written beside a sweep's table: training curves, metric-vs-hyper-parameter curves, search scatter,
and the paired difference of each guided setup to its no-guidance baseline.

A sweep file asks for curves with ``PLOTS = [{"x": "language.omega", "lines": ["language.guidance"]}]``:
one line per combination of the ``lines`` keys, mean +- std over seeds of the metric (best test epoch and
last epoch side by side). Matplotlib runs headless (Agg).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from langdml_core.runner.records import TrialRecord

METRIC = "test/recall_at_1"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(records: list[TrialRecord], out: Path, metric: str = METRIC) -> Path | None:
    """Per trial: the test metric and the DML loss over epochs (one line per trial)."""
    rows = [r for r in records if any(metric in h for h in r.history)]
    if not rows:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for record in rows:
        epochs = [h["epoch"] for h in record.history if metric in h]
        left.plot(epochs, [h[metric] for h in record.history if metric in h], marker=".", label=record.name)
        losses = [(h["epoch"], h["train/dml_loss"]) for h in record.history if "train/dml_loss" in h]
        if losses:
            right.plot(*zip(*losses, strict=True), marker=".")
    left.set(xlabel="epoch", ylabel=metric, title="test metric per epoch")
    right.set(xlabel="epoch", ylabel="train/dml_loss", title="DML loss per epoch")
    if len(rows) <= 12:
        left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def hyperparameter_curve(
    frame: pd.DataFrame, x: str, lines: list[str], out: Path, metric: str = METRIC
) -> Path | None:
    """Mean +- std over seeds of the metric against ``x``, one line per value combination of ``lines``."""
    x_col, line_cols = f"cfg.{x}", [f"cfg.{k}" for k in lines if f"cfg.{k}" in frame]
    ok = frame[frame["status"] == "TERMINATED"] if "status" in frame else frame
    if x_col not in ok or ok.empty:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, protocol in zip(axes, ("best_test_epoch", "last"), strict=True):
        column = f"{protocol}/{metric}"
        if column not in ok:
            continue
        groups = ok.groupby(line_cols, sort=True) if line_cols else [((), ok)]
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            stats = group.groupby(x_col)[column].agg(["mean", "std"]).sort_index()
            label = ", ".join(f"{c.rsplit('.', 1)[-1]}={v}" for c, v in zip(line_cols, key, strict=True))
            ax.errorbar(
                stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=label
            )
        ax.set(xlabel=x, ylabel=metric, title=f"{protocol} (mean +- std over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def search_plot(frame: pd.DataFrame, keys: list[str], metric: str, out: Path) -> Path | None:
    """Each searched value against the search metric; colour = epochs the proposal trained before ASHA
    stopped it (the darkest points trained the whole schedule)."""
    if frame.empty or metric not in frame:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = ax.scatter(frame[key], frame[metric], c=frame["epochs"], cmap="viridis_r")
        ax.set(xlabel=key, ylabel=metric, xscale="log", title=f"{metric} at the last epoch trained")
    fig.colorbar(points, ax=axes[0].tolist(), label="epochs trained")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def paired_plot(
    paired: pd.DataFrame, out: Path, metric: str = METRIC, protocol: str | None = None
) -> Path | None:
    """Per guided setup: each seed's difference to the no-guidance baseline (dots), their mean +- std (bar),
    and the zero line; ``paired`` comes from :func:`langdml_core.runner.report.paired_differences`. One panel, the
    protocol "last" (or the first one present)."""
    rows = paired[paired["metric"] == metric] if not paired.empty else paired
    if rows.empty:
        return None
    present = list(dict.fromkeys(rows["protocol"]))
    protocol = protocol if protocol in present else ("last" if "last" in present else present[0])
    rows = rows[rows["protocol"] == protocol].reset_index(drop=True)
    setup = [c for c in rows.columns if c.startswith("cfg.")]
    # label each setup by the keys that tell the guided setups apart (all of them when only one)
    shown = [c for c in setup if rows[c].astype(str).nunique() > 1] or setup
    labels = ["\n".join(f"{_short(c)}={row[c]}" for c in shown) for _, row in rows.iterrows()]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(24.0, max(6.0, 1.4 * len(rows) + 2)), 5))
    ax.axhline(0.0, color="grey", linewidth=1, linestyle="--")
    for i, row in rows.iterrows():
        diffs = list(row["diffs"])
        offsets = [0.12 * (j - (len(diffs) - 1) / 2) / max(1, len(diffs) - 1) for j in range(len(diffs))]
        ax.scatter([i + o for o in offsets], diffs, color="tab:blue", s=18, alpha=0.7, zorder=3)
        std = row["std"] if pd.notna(row["std"]) else 0.0
        ax.errorbar([i + 0.25], [row["mean"]], yerr=[std], fmt="D", color="tab:red", capsize=4, zorder=4)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set(
        ylabel="test R@1 difference to no guidance (points)"
        if metric == METRIC
        else f"{metric} difference to no guidance (points)",
        title=f"paired by seed ({protocol}): seeds as dots, mean +- std as diamond",
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def language_effect_plot(rows: list[dict], out: Path) -> Path:
    """Per guided trial: its Recall@1 difference to its unguided twin with the paired bootstrap 95% interval
    over test queries (rows from :func:`langdml_core.runner.language_effect.language_effect`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    y = list(range(len(rows)))
    diffs = [row["diff"] for row in rows]
    errors = [[row["diff"] - row["low"] for row in rows], [row["high"] - row["diff"] for row in rows]]
    ax.errorbar(diffs, y, xerr=errors, fmt="o", capsize=3)
    ax.axvline(0.0, color="grey", linewidth=1, linestyle="--")
    ax.set_yticks(y)
    ax.set_yticklabels([row["trial"] for row in rows], fontsize=8)
    ax.set_xlabel("test R@1, guided minus its unguided twin (points), 95% bootstrap interval over queries")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _short(column: str) -> str:
    """``cfg.loss.name`` -> ``loss``, ``cfg.language.omega`` -> ``omega``."""
    parts = column.removeprefix("cfg.").split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
