"""What an MLflow tracking store holds for langdml, and whether a sweep's record is complete there.

    python cluster/check_tracking.py URI                                   # experiments, runs by status
    python cluster/check_tracking.py URI --sweep sweeps/demo.py --smoke --results DIR

With --sweep it runs `langdml report SWEEP --tracking-uri URI` (the report rebuilt from MLflow alone, into
--results) and checks that every trial of the sweep (as `--list` names them, with --smoke/--set/--seeds) has
one FINISHED run in MLflow with every epoch (the `epoch` metric at steps 1..run.epochs) and a TERMINATED row
with that many epochs in the report's trials.parquet. It prints one line per trial; exit status 1 when
anything is missing. Used by the on-demand cluster scripts and tests/test_cluster.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def summary(uri: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    lines = []
    for experiment in client.search_experiments():
        if experiment.name == "Default":
            continue
        runs = client.search_runs([experiment.experiment_id], max_results=50000)
        trials = [r for r in runs if "langdml.trial" in r.data.tags]
        statuses = sorted({r.info.status for r in trials})
        counts = ", ".join(f"{sum(r.info.status == s for r in trials)} {s}" for s in statuses)
        lines.append(f"experiment {experiment.name}: {len(trials)} trial runs ({counts or 'none'})")
    return lines


def check_sweep(uri: str, args: argparse.Namespace) -> list[str]:
    """Problems with the sweep's record in MLflow and in the report rebuilt from it (empty: complete)."""
    import pandas as pd
    from mlflow import MlflowClient

    from langdml_core.runner.sweep_file import load_sweep

    sweep = load_sweep(args.sweep, overrides=args.set, seeds=args.seeds, smoke=args.smoke)
    report = [
        sys.executable,
        "-m",
        "langdml_core.runner.cli",
        "report",
        str(args.sweep),
        "--tracking-uri",
        uri,
    ]
    report += ["--results", str(args.results)] + (["--smoke"] if args.smoke else [])
    done = subprocess.run(report, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _path()})
    if done.returncode:
        return [f"`langdml report` failed ({done.returncode}): {done.stderr.strip()[-2000:]}"]
    print(f"$ langdml report {args.sweep} --tracking-uri {uri}  ->  {args.results}/{sweep.name}/table.md")

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(sweep.name)
    runs = client.search_runs([experiment.experiment_id], max_results=50000) if experiment else []
    by_trial: dict[str, list] = {}
    for run in runs:
        if "langdml.trial" in run.data.tags:
            by_trial.setdefault(run.data.tags["langdml.trial"], []).append(run)
    frame = pd.read_parquet(Path(args.results) / sweep.name / "trials.parquet").set_index("trial")

    problems = []
    for trial in sweep.trials:
        epochs = int(trial.config["run.epochs"])
        found = by_trial.get(trial.name, [])
        if len(found) != 1:
            problems.append(f"{trial.name}: {len(found)} MLflow runs, expected 1")
            continue
        run = found[0]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
        row = frame.loc[trial.name] if trial.name in frame.index else None
        reported = (row["status"], int(row["epochs"])) if row is not None else ("missing", 0)
        print(
            f"  {sweep.name} {trial.name}: MLflow {run.info.status}, epochs {steps}; "
            f"report {reported[0]}, {reported[1]} epochs"
        )
        if run.info.status != "FINISHED":
            problems.append(f"{trial.name}: MLflow status {run.info.status}")
        if steps != list(range(1, epochs + 1)):
            problems.append(f"{trial.name}: epochs {steps} in MLflow, expected 1..{epochs}")
        if reported != ("TERMINATED", epochs):
            problems.append(f"{trial.name}: report row {reported}, expected ('TERMINATED', {epochs})")
    return problems


def _path() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", help="MLflow tracking URI (http://..., sqlite:////..., postgresql://...)")
    parser.add_argument("--sweep", type=Path, help="check this sweep file's trials")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results", type=Path, default=Path("results-check"), help="where the report goes")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    for line in summary(args.uri):
        print(line)
    if args.sweep is None:
        return 0
    problems = check_sweep(args.uri, args)
    for problem in problems:
        print(f"MISSING: {problem}")
    if not problems:
        print(f"OK: every trial of {args.sweep} FINISHED with every epoch, in MLflow and in the report")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
