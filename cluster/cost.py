"""What a sweep costs on cluster/gpu.yaml: its trials (as `python sweeps/X.py --list` expands them) x epochs x
an ESTIMATED time per epoch, in GPU-hours and dollars. Prints the markdown that cluster/README.md shows
(tests/test_cluster.py checks that the README holds this exact output).

    python cluster/cost.py                      # Table 1
    python cluster/cost.py sweeps/best_512.py   # any sweep over the same datasets
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from langdml_core.runner.sweep_file import load_sweep  # noqa: E402

# ESTIMATES, not measurements: ResNet-50 at 224 px, batch 90-112, on one A10G (g5.xlarge), one training
# epoch plus the per-epoch evaluation on the test split (train / test images: CUB200 5,864 / 5,924,
# CARS196 8,054 / 8,131, SOP 59,551 / 60,502), assuming ~350 training and ~1,000 evaluation images/s.
SECONDS_PER_EPOCH = {"cub200": 40, "cars196": 50, "sop": 240}
DOLLARS_PER_GPU_HOUR = {"spot": 0.45, "on-demand": 1.006}  # g5.xlarge, us-west-2; spot varies by hour/zone
HEAD_DOLLARS_PER_HOUR = 0.192  # m6i.xlarge on-demand
WORKERS = 8  # max_workers in cluster/gpu.yaml


def cost_table(sweep_path: Path) -> str:
    sweep = load_sweep(sweep_path)
    cells = Counter((t.config["data.name"], t.config["run.epochs"]) for t in sweep.trials)
    lines = [
        f"`{sweep_path.relative_to(ROOT)}`: {len(sweep.trials)} trials "
        "(ESTIMATE: the seconds per epoch are assumed, not measured)",
        "",
        "| dataset | trials | epochs | s/epoch (estimate) | GPU-hours |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    total_hours = 0.0
    longest = 0.0
    for (dataset, epochs), trials in sorted(cells.items()):
        seconds = SECONDS_PER_EPOCH[dataset]
        hours = trials * epochs * seconds / 3600
        total_hours += hours
        longest = max(longest, epochs * seconds / 3600)
        lines.append(
            f"| {dataset} | {trials} | {epochs} | {seconds} | {trials} x {epochs} x {seconds} / 3600 = {hours:.1f} |"
        )
    lines.append(f"| **total** | {len(sweep.trials)} | | | **{total_hours:.1f}** |")
    lines.append("")
    for market, price in DOLLARS_PER_GPU_HOUR.items():
        lines.append(
            f"- GPU workers, {market} at ${price:.3f}/GPU-hour: "
            f"{total_hours:.1f} x {price:.3f} = **${total_hours * price:,.0f}**"
        )
    wall = max(total_hours / WORKERS, longest)
    lines.append(
        f"- Wall clock with {WORKERS} workers: at least max({total_hours:.1f} / {WORKERS}, longest trial "
        f"{longest:.1f} h) = {wall:.1f} h; the head for that long: {wall:.1f} x {HEAD_DOLLARS_PER_HOUR:.3f} "
        f"= ${wall * HEAD_DOLLARS_PER_HOUR:,.0f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(cost_table(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "sweeps" / "table1.py"))
