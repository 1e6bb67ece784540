"""Sweep results -> ``trials.parquet`` (one row per trial) and ``table.md`` (mean +- std over seeds).

Three model-selection protocols are reported side by side and named: the last epoch, the best TEST epoch
per metric (what the paper's release did), and, when a validation split exists, the epoch with the best
validation Recall@1.

Below the main table, every guided setup is compared with its no-guidance baseline on the same seeds
(paired differences in percentage points and a two-sided paired t-test), see :func:`paired_differences`.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from langdml_core.runner import plots
from langdml_core.runner.places import SMOKE_SUFFIX
from langdml_core.runner.records import ERROR, TERMINATED, TrialRecord

HEADLINE = ("test/recall_at_1", "test/map_at_r", "test/map_at_1000", "test/nmi")
PROTOCOLS = ("last", "best_test_epoch", "val_selected")
PAIRED_METRICS = ("test/recall_at_1", "test/map_at_r")
GUIDANCE, OMEGA, SEED = "cfg.language.guidance", "cfg.language.omega", "cfg.run.seed"
PAIRED_TITLE = "Paired difference to no guidance (same seeds)"


def trial_rows(records: list[TrialRecord]) -> pd.DataFrame:
    """Flatten per-trial records (name, varied, status, history) into one row per trial."""
    rows = []
    for record in records:
        row: dict[str, Any] = {
            "trial": record.name,
            "status": record.status,
            "error": record.error,
        }
        row.update({f"cfg.{k}": _scalar(v) for k, v in record.varied.items()})
        row["epochs"] = max((int(h["epoch"]) for h in record.history if "epoch" in h), default=0)
        row.update({k: v for k, v in protocol_summary(record.history).items() if not k.endswith("/epoch")})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in [c for c in frame.columns if c.startswith("cfg.")]:
        # e.g. a key swept over [None, 0]: parquet needs one type per column, so write the values as text, as
        # the MLflow tags spell them
        if len({_kind(v) for v in frame[column]}) > 1:
            frame[column] = frame[column].map(str)
    return frame


def protocol_summary(history: list[dict[str, Any]]) -> dict[str, float]:
    """A trial's metrics under each protocol (:data:`PROTOCOLS`): ``last/<metric>``, ``best_test_epoch/<metric>``
    (per metric its best epoch on the test split) and, with a validation split, ``val_selected/<metric>`` (the
    test metrics at the epoch of the best validation Recall@1); ``<protocol>/epoch`` says which epoch
    (best_test_epoch: that of the best test Recall@1)."""
    evaluated = [h for h in history if _finite(h.get("test/recall_at_1"))]
    if not evaluated:
        return {}
    last = evaluated[-1]
    metrics = sorted(k for k in last if k.startswith(("test/", "val/")) and _finite(last[k]))
    out: dict[str, float] = {"last/epoch": float(last["epoch"])}
    for key in metrics:
        out[f"last/{key}"] = float(last[key])
        out[f"best_test_epoch/{key}"] = max(float(h[key]) for h in evaluated if _finite(h.get(key)))
    best = max(evaluated, key=lambda h: (h["test/recall_at_1"], -h["epoch"]))
    out["best_test_epoch/epoch"] = float(best["epoch"])
    if any(_finite(h.get("val/recall_at_1")) for h in evaluated):
        chosen = max(evaluated, key=lambda h: (h.get("val/recall_at_1", -1), -h["epoch"]))
        out["val_selected/epoch"] = float(chosen["epoch"])
        for key in metrics:
            if key.startswith("test/"):
                out[f"val_selected/{key}"] = float(chosen[key])
    return out


def setups(frame: pd.DataFrame) -> tuple[list[str], list[tuple[tuple, pd.DataFrame]]]:
    """(the setup columns: varied keys except the seed; [(setup values, its trials' rows)] in order)."""
    setup = [c for c in frame.columns if c.startswith("cfg.") and c != SEED]
    groups = frame.groupby(setup, sort=False, dropna=False) if setup else [((), frame)]
    return setup, [(key if isinstance(key, tuple) else (key,), group) for key, group in groups]


def summary_table(frame: pd.DataFrame, paper: pd.DataFrame | None = None) -> str:
    """Markdown: one line per setup (varied keys except the seed), mean +- std over seeds."""
    setup, groups = setups(frame)
    protocols = [p for p in PROTOCOLS if f"{p}/test/recall_at_1" in frame]
    metrics = [m for m in HEADLINE if f"last/{m}" in frame]
    header = [c.removeprefix("cfg.") for c in setup] + ["seeds", "failed"]
    header += [f"{m.removeprefix('test/')} ({p})" for m in metrics for p in protocols]
    with_paper = paper is not None and {"cfg.data.name", "cfg.loss.name"} <= set(frame.columns)
    if with_paper:
        header += ["paper R@1", "diff (best_test_epoch)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in groups:
        ok = group[group["status"] == TERMINATED]
        cells = [str(k) for k in key] + [str(len(ok)), str(int((group["status"] == ERROR).sum()))]
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


def paired_differences(frame: pd.DataFrame) -> pd.DataFrame:
    """Each guided setup against its no-guidance baseline, paired by seed.

    The baseline of a guided setup (``cfg.language.guidance`` != "none") is the setup with the same varied
    keys except ``cfg.language.guidance`` == "none" and ``cfg.language.omega`` (a guided setup may carry its
    own omega; if several baselines differ only in omega, the one with the same omega is used, and a setup
    whose baseline stays ambiguous is left out). Only seeds with a TERMINATED trial on both sides count.

    One row per guided setup x protocol x metric (test recall_at_1, and map_at_r when present): the setup's
    ``cfg.*`` keys (without the seed), ``protocol``, ``metric``, ``n`` (pairs), ``mean`` and ``std``
    (ddof=1) of guided - baseline in percentage points, ``t`` and ``p`` (two-sided paired t-test; NaN when
    n < 2 or the differences have no variance), ``seeds`` and ``diffs`` (per seed, points). Empty when the
    frame has no guidance column or no guided setup has a baseline.
    """
    setup = [c for c in frame.columns if c.startswith("cfg.") and c != SEED]
    columns = [*setup, "protocol", "metric", "n", "mean", "std", "t", "p", "seeds", "diffs"]
    if GUIDANCE not in frame or frame.empty:
        return pd.DataFrame(columns=columns)
    ok = frame[frame["status"] == "TERMINATED"] if "status" in frame else frame
    seeds = ok[SEED] if SEED in ok else pd.Series(0, index=ok.index)  # one seed for all when not varied
    match = [c for c in setup if c not in (GUIDANCE, OMEGA)]
    protocols = [p for p in PROTOCOLS if f"{p}/test/recall_at_1" in frame]
    value_columns = [f"{p}/{m}" for p in protocols for m in PAIRED_METRICS if f"{p}/{m}" in frame]
    # per setup (all varied keys but the seed, NaN -> None so that keys compare equal): per seed values
    per_setup: dict[tuple, pd.DataFrame] = {}
    for key in dict.fromkeys(_key(row) for row in frame[setup].itertuples(index=False)):
        rows = ok[[_key(row) == key for row in ok[setup].itertuples(index=False)]]
        per_setup[key] = rows[value_columns].groupby(seeds.loc[rows.index], sort=True).mean()
    position = {c: i for i, c in enumerate(setup)}
    out = []
    for key, guided in per_setup.items():
        if key[position[GUIDANCE]] in ("none", None):
            continue
        candidates = [
            other
            for other in per_setup
            if other[position[GUIDANCE]] == "none"
            and all(other[position[c]] == key[position[c]] for c in match)
        ]
        if len(candidates) > 1 and OMEGA in position:
            candidates = [c for c in candidates if c[position[OMEGA]] == key[position[OMEGA]]]
        if len(candidates) != 1:
            continue
        baseline = per_setup[candidates[0]]
        common = guided.index.intersection(baseline.index)
        for column in value_columns:
            protocol, metric = column.split("/", 1)
            pair = pd.DataFrame({"g": guided.loc[common, column], "b": baseline.loc[common, column]}).dropna()
            if pair.empty:
                continue
            diffs = 100 * (pair["g"] - pair["b"])  # fractions in the frame, points in the table
            n = len(diffs)
            std = float(diffs.std(ddof=1)) if n > 1 else math.nan
            t = p = math.nan
            if n > 1 and std > 1e-9:
                from scipy import stats

                test = stats.ttest_rel(100 * pair["g"], 100 * pair["b"])
                t, p = float(test.statistic), float(test.pvalue)
            out.append(
                [*key, protocol, metric, n, float(diffs.mean()), std, t, p, tuple(diffs.index), tuple(diffs)]
            )
    return pd.DataFrame(out, columns=columns)


def paired_table(paired: pd.DataFrame) -> str:
    """Markdown: one line per guided setup and protocol; per metric the pairs n, the mean difference to no
    guidance in points, the std of the differences and the paired t-test's p ("n/a" for n < 2 or no
    variance). Empty string for an empty frame."""
    if paired.empty:
        return ""
    setup = [c for c in paired.columns if c.startswith("cfg.")]
    metrics = [m for m in PAIRED_METRICS if (paired["metric"] == m).any()]
    header = [c.removeprefix("cfg.") for c in setup] + ["protocol"]
    for m in metrics:
        name = m.removeprefix("test/")
        header += [f"{name} n", f"{name} diff", f"{name} sd", f"{name} p"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = paired.groupby([*setup, "protocol"], sort=False, dropna=False)
    for key, group in groups:
        cells = [str(k) for k in key]
        for m in metrics:
            row = group[group["metric"] == m]
            if row.empty:
                cells += ["", "", "", ""]
                continue
            r = row.iloc[0]
            cells += [
                str(int(r["n"])),
                f"{r['mean']:+.2f}",
                "n/a" if math.isnan(r["std"]) else f"{r['std']:.2f}",
                "n/a" if math.isnan(r["p"]) else f"{r['p']:.3g}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline(frame: pd.DataFrame, most: int = 8) -> str:
    """One line with each setup's last-epoch test Recall@1 (mean +- std over its finished seeds): the words a
    reader sees first (MLflow's run page shows only the top of a description without a click)."""
    if "last/test/recall_at_1" not in frame:
        return ""
    _, groups = setups(frame)
    parts = []
    for key, group in groups[:most]:
        ok = group[group["status"] == TERMINATED]
        value = _mean_std(ok["last/test/recall_at_1"]) or "no finished seed"
        name = ", ".join(str(k) for k in key) or "all"
        parts.append(f"**{name}** {value} ({len(ok)} seed{'s' if len(ok) != 1 else ''})")
    more = f"; {len(groups) - most} more setups in the table" if len(groups) > most else ""
    return "Test Recall@1, last epoch, mean +- std over seeds: " + "; ".join(parts) + more + "."


def write_report(sweep, records: list[TrialRecord], out_dir: Path, load=None) -> str:
    """table.md, trials.parquet and the plots in ``out_dir``; with ``load`` (a trial's test embeddings, see
    ``runner.language_effect``) also what language changed per guided trial. Returns table.md's text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    order = {trial.name: i for i, trial in enumerate(sweep.trials)}
    frame = trial_rows(sorted(records, key=lambda r: order.get(r.name, len(order))))
    frame.to_parquet(out_dir / "trials.parquet", index=False)
    table = summary_table(frame, paper_results())
    # the key numbers first (MLflow's run page shows the top of the description without a click), then the
    # table, then how to read it
    top = headline(frame)
    text = (
        f"# {sweep.name}\n\n"
        + (f"{top}\n\n" if top else "")
        + f"{table}\n\nSweep file: `{Path(sweep.path).name}`; {len(frame)} trials. Metrics in "
        "percent (like the paper), mean +- std over seeds. Protocols: last = last epoch; best_test_epoch = per metric "
        "the best epoch on the TEST split (the paper's release protocol, optimistic); val_selected = test metrics at "
        "the epoch with the best validation recall_at_1 (only with data.val_classes).\n"
        + (f"\n{sweep.module.PROTOCOL}\n" if getattr(sweep.module, "PROTOCOL", "") else "")
    )
    paired = paired_table(paired_differences(frame))
    if paired:
        text += (
            f"\n## {PAIRED_TITLE}\n\nEach guided setup minus the no-guidance setup with the same other varied keys "
            "(omega aside), on the seeds that finished in both; in percentage points. n = pairs, diff = mean "
            "difference, sd = std of the differences (ddof=1), p = two-sided paired t-test (n/a for fewer than "
            "two pairs or no variance).\n\n" + paired + "\n"
        )
    if load is not None:
        from langdml_core.runner.language_effect import LANGUAGE_EFFECT_TITLE, write_language_effect

        effect = write_language_effect(records, out_dir, load)
        if effect:
            text += f"\n## {LANGUAGE_EFFECT_TITLE}\n\n" + effect
    unfinished = missing_trials(sweep, records)
    if unfinished:
        text += (
            f"\n## Not finished\n\n{len(unfinished)} of {len(sweep.trials)} trials did not finish (the sweep "
            "was interrupted or is still running; `--resume` finishes it), so the rows above hold fewer seeds: "
            + ", ".join(f"`{name}`" for name in unfinished)
            + "\n"
        )
    select = getattr(sweep.module, "SELECT", None)
    if select:
        chosen = select_by_validation(frame, **select)
        (out_dir / "selected.md").write_text(chosen)
        text += "\n## Chosen on the validation split\n\n" + chosen
    reference = _reference_dir(sweep)
    smoke = sweep.name.endswith(SMOKE_SUFFIX)  # a smoke run's numbers are not the reference's experiment
    if reference is not None and not smoke and reference.resolve() != out_dir.resolve():
        text += "\n## Against the committed reference\n\n" + reference_check(
            frame,
            pd.read_parquet(reference / "trials.parquet"),
            sweep.module.REFERENCE,  # as the project names it
        )
    (out_dir / "table.md").write_text(text)
    write_plots(sweep, records, frame, out_dir)
    return text


def missing_trials(sweep, records: list[TrialRecord]) -> list[str]:
    """The sweep's trials that neither finished nor failed: interrupted, or never started (a search's grid
    is its cell, not its trials: only its records are looked at)."""
    settled = {r.name for r in records if r.status in (TERMINATED, ERROR)}
    grid = getattr(sweep, "search", None) is None
    names = [t.name for t in sweep.trials] if grid else [r.name for r in records]
    return [name for name in dict.fromkeys(names) if name not in settled]


def select_by_validation(
    frame: pd.DataFrame, by: list[str], metric: str = "val/recall_at_1", tie_break: str = ""
) -> str:
    """Markdown: per value of the ``by`` keys, the setup (the other varied keys, seeds aside) with the highest
    mean last-epoch ``metric`` over its finished seeds; ties go to the smaller ``tie_break`` value. The test
    split plays no part in it."""
    column = f"last/{metric}"
    ok = frame[frame["status"] == "TERMINATED"]
    if column not in ok or ok.empty:
        return f"No finished trial has {metric}; nothing chosen.\n"
    by_cols = [f"cfg.{k}" for k in by]
    setup = [c for c in frame.columns if c.startswith("cfg.") and c != SEED and c not in by_cols]
    lines = [
        f"Rule: per {', '.join(by)}, the setting with the highest mean last-epoch {metric} over seeds"
        + (f" (ties: the smaller {tie_break})" if tie_break else "")
        + ".\n",
        "| " + " | ".join([*by, *[c.removeprefix("cfg.") for c in setup], "seeds", metric, "chosen"]) + " |",
        "|" + "---|" * (len(by) + len(setup) + 3),
    ]
    for key, group in ok.groupby(by_cols, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        scores = group.groupby(setup, sort=False, dropna=False)[column].agg(["mean", "std", "count"])
        scores = scores.reset_index()
        order = scores.sort_values(
            ["mean", f"cfg.{tie_break}"] if tie_break else ["mean"],
            ascending=[False, True] if tie_break else [False],
            kind="stable",
        )
        best = order.index[0]
        for i, row in scores.iterrows():
            spread = "" if row["count"] < 2 else f" +- {100 * row['std']:.2f}"
            cells = [str(k) for k in key] + [str(row[c]) for c in setup]
            cells += [
                str(int(row["count"])),
                f"{100 * row['mean']:.2f}{spread}",
                "**yes**" if i == best else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reference_check(frame: pd.DataFrame, reference: pd.DataFrame, where: str) -> str:
    """Markdown: per setup, this run's mean test recall_at_1 (last epoch) against the reference's mean +- 2
    std over seeds; says whether every setup lies inside."""
    column = "last/test/recall_at_1"
    setup = [c for c in reference.columns if c.startswith("cfg.") and c != SEED]
    lines = [
        f"Reference: `{where}` (mean +- 2 std over its seeds, last-epoch test Recall@1).\n",
        "| "
        + " | ".join([*(c.removeprefix("cfg.") for c in setup), "this run", "reference", "inside"])
        + " |",
        "|" + "---|" * (len(setup) + 3),
    ]
    inside_all = True
    ref_ok = reference[reference["status"] == "TERMINATED"]
    ours_ok = frame[frame["status"] == "TERMINATED"]
    for key, ref in ref_ok.groupby(setup, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mask = pd.Series(True, index=ours_ok.index)
        for c, v in zip(setup, key, strict=True):
            mask &= ours_ok[c] == v if c in ours_ok else False
        ours = ours_ok.loc[mask, column] if column in ours_ok else pd.Series(dtype=float)
        mean, std = 100 * ref[column].mean(), 100 * ref[column].std(ddof=0)
        if ours.empty:
            verdict, here = "missing", ""
        else:
            here = 100 * ours.mean()
            verdict = "yes" if abs(here - mean) <= 2 * std else "NO"
            here = f"{here:.2f}"
        inside_all &= verdict == "yes"
        lines.append(
            "| " + " | ".join([*map(str, key), here, f"{mean:.2f} +- {2 * std:.2f}", verdict]) + " |"
        )
    lines.append("")
    lines.append(
        "Every setup is inside the reference's band."
        if inside_all
        else "NOT every setup is inside the reference's band."
    )
    return "\n".join(lines) + "\n"


def _reference_dir(sweep) -> Path | None:
    """The committed reference results a sweep file names (``REFERENCE``, relative to the project root)."""
    name = getattr(sweep.module, "REFERENCE", "")
    if not name:
        return None
    path = Path(sweep.path).resolve().parent.parent / name
    return path if (path / "trials.parquet").is_file() else None


def write_plots(sweep, records: list[TrialRecord], frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """curves.png (every trial's test curve and loss), paired.png (each guided setup's per-seed difference to no
    guidance, when there is a baseline) and one PNG per entry of the sweep file's PLOTS."""
    written = [plots.training_curves(records, out_dir / "curves.png")]
    paired = paired_differences(frame)
    if not paired.empty:
        written.append(plots.paired_plot(paired, out_dir / "paired.png"))
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


def _key(values) -> tuple:
    """A setup key whose missing values (NaN, None) compare equal to each other."""
    return tuple(None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _kind(value: Any) -> type:
    """A swept value's kind: numbers are one kind (an int and a float share a column), bool and str others."""
    return float if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value)
