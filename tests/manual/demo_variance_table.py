"""Print results/demo_variance/sources.md: how much of the demo's seed-to-seed spread each random source makes.

sweeps/demo_variance.py ran the demo's no-guidance recipe with run.init_seed, run.order_seed and
run.augment_seed at 0, then moved one of them over 1-4 (as run.seed) with the other two at 0. Per source: its 5
test Recall@1 values, their mean and std (ddof 0, as the report's tables), and a 90% interval for the std
(chi-square, from the ddof-1 variance of 5 values: a std of 5 draws is itself uncertain by a factor of about 2).
Beside them, the demo's own seeds (run.seed 0-7, all three sources moving together: results/demo and
results/demo_seeds, guidance none), and the square root of the three sources' summed variances, which would
match it if the sources acted independently and added.

Run: .venv/bin/python tests/manual/demo_variance_table.py results/demo_variance results/demo results/demo_seeds
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SOURCES = ["init", "order", "augment"]
METRIC = "last/test/recall_at_1"


def spread(values: np.ndarray) -> dict:
    """Mean and ddof-0 std in points, and a 90% chi-square interval for the std."""
    points = 100 * np.asarray(values, dtype=float)
    n = len(points)
    var1 = points.var(ddof=1)
    low, high = (np.sqrt((n - 1) * var1 / stats.chi2.ppf(q, n - 1)) for q in (0.95, 0.05))
    return {
        "n": n,
        "mean": points.mean(),
        "std": points.std(ddof=0),
        "low": low,
        "high": high,
        "points": points,
    }


def by_source(frame: pd.DataFrame) -> dict[str, dict]:
    """Each source's 5 trials: the one with every stream at 0 (run.seed 0), then those where it alone moved
    (sweeps/demo_variance.py: the moved stream is the one left unset, init or order; with both at 0, derive()
    moved the augmentation with run.seed)."""
    ok = frame[frame["status"] == "TERMINATED"]
    seed = ok["cfg.run.seed"].astype(int)

    def unset(column: str) -> pd.Series:  # the report writes a column swept over [None, 0] as text
        return ok[column].isna() | (ok[column].astype(str) == "None")

    init_moves, order_moves = unset("cfg.run.init_seed"), unset("cfg.run.order_seed")
    moves = {"init": init_moves, "order": order_moves, "augment": ~init_moves & ~order_moves}
    everything_at_0 = ok[(seed == 0) & ~init_moves & ~order_moves]
    out = {}
    for source in SOURCES:
        rows = pd.concat([everything_at_0, ok[moves[source] & (seed != 0)]]).sort_values("cfg.run.seed")
        out[source] = spread(rows[METRIC].to_numpy())
    return out


def demo_seeds(frames: list[pd.DataFrame]) -> dict:
    rows = pd.concat(frames)
    rows = rows[(rows["status"] == "TERMINATED") & (rows["cfg.language.guidance"] == "none")]
    return spread(rows.sort_values("cfg.run.seed")[METRIC].to_numpy())


def markdown(sources: dict[str, dict], together: dict) -> str:
    def row(name: str, s: dict) -> str:
        values = ", ".join(f"{v:.2f}" for v in s["points"])
        return f"| {name} | {s['n']} | {s['mean']:.2f} | {s['std']:.2f} | {s['low']:.2f} - {s['high']:.2f} | {values} |"

    lines = [
        "| source moved (others at 0) | trials | test R@1 mean | std (ddof 0) | 90% interval of the std | test R@1 per value |",
        "|---|---|---|---|---|---|",
        *(row(f"run.{s}_seed", sources[s]) for s in SOURCES),
        row("all three (the demo's run.seed 0-7)", together),
    ]
    summed = np.sqrt(sum(sources[s]["std"] ** 2 for s in SOURCES))
    lines.append("")
    lines.append(
        f"Square root of the three sources' summed variances: {summed:.2f} points, against {together['std']:.2f} "
        "for the demo's seeds."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folders = [Path(a) for a in sys.argv[1:]] or [
        Path(p) for p in ("results/demo_variance", "results/demo", "results/demo_seeds")
    ]
    sources = by_source(pd.read_parquet(folders[0] / "trials.parquet"))
    together = demo_seeds([pd.read_parquet(f / "trials.parquet") for f in folders[1:]])
    print(markdown(sources, together))
