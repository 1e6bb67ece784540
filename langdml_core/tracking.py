"""MLflow run lifecycle, owned by langdml (not by Ray's MLflow callback).

One experiment per sweep, one parent run per sweep (reused on resume), one child run per trial. A trial's
run is looked up by (parent run, trial name) before one is created, and its id is kept in the trial's
checkpoint, so a retried or resumed trial continues the same run. Runs end FINISHED or FAILED.
Only real metrics are logged, with step = epoch; names are the evaluator's (``test/recall_at_1``).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

TRIAL_TAG = "langdml.trial"
SWEEP_TAG = "langdml.sweep"
PARENT_TAG = "mlflow.parentRunId"


def default_tracking_uri(results_dir: str | Path = "results") -> str:
    """A SQLite database under results/ (absolute path: trials run in other working directories)."""
    path = Path(results_dir).expanduser().absolute() / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def client(tracking_uri: str):
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def ensure_parent_run(tracking_uri: str, sweep: str, tags: dict[str, str] | None = None) -> tuple[str, str]:
    """(experiment id, parent run id) for a sweep; an existing unfinished or finished parent is reused."""
    c = client(tracking_uri)
    experiment = c.get_experiment_by_name(sweep)
    experiment_id = experiment.experiment_id if experiment else c.create_experiment(sweep)
    found = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`langdml.role` = 'parent'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    if found:
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            c.update_run(run_id, status="RUNNING")
        return experiment_id, run_id
    run = c.create_run(
        experiment_id, run_name=sweep, tags={SWEEP_TAG: sweep, "langdml.role": "parent", **(tags or {})}
    )
    return experiment_id, run.info.run_id


def end_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(tracking_uri).set_terminated(run_id, status=status)


class TrialRun:
    """The MLflow run of one trial: found or created once, then metrics per epoch, then ended."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        trial_name: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ):
        self.client = client(tracking_uri)
        self.run_id = run_id or self._find(experiment_id, parent_run_id, trial_name)
        if self.run_id is None:
            run = self.client.create_run(
                experiment_id,
                run_name=trial_name,
                tags={PARENT_TAG: parent_run_id, TRIAL_TAG: trial_name, **(tags or {})},
            )
            self.run_id = run.info.run_id
        else:
            self.client.update_run(self.run_id, status="RUNNING")
        self._logged_steps = self._steps_already_logged()

    def _find(self, experiment_id: str, parent_run_id: str, trial_name: str) -> str | None:
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_TAG}` = '{_quote(trial_name)}'",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0].info.run_id if runs else None

    def _steps_already_logged(self) -> set[int]:
        history = self.client.get_metric_history(self.run_id, "epoch")
        return {int(m.step) for m in history}

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, _param_value(v)) for k, v in params.items() if k not in existing]
        for start in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[start : start + 100])

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Metrics of one epoch at step = epoch, once: a replayed epoch after a resume is not logged twice."""
        from mlflow.entities import Metric

        step = int(row["epoch"])
        if step in self._logged_steps:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        self.client.log_batch(self.run_id, metrics=metrics)
        self._logged_steps.add(step)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).exists():
            self.client.log_artifact(self.run_id, str(path))

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def records_from_mlflow(tracking_uri: str, sweep: str) -> list[dict[str, Any]]:
    """Per-trial records (name, varied, status, per-epoch history) rebuilt from the sweep's MLflow runs."""
    from langdml_core.config import parse_value
    from langdml_core.errors import ConfigError

    c = client(tracking_uri)
    experiment = c.get_experiment_by_name(sweep)
    if experiment is None:
        raise ConfigError(f"MLflow at {tracking_uri} has no experiment {sweep!r}; run the sweep first.")
    runs = c.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TRIAL_TAG}` != ''",
        max_results=50000,
        order_by=["attributes.start_time ASC"],
    )
    reserved = {
        SWEEP_TAG,
        TRIAL_TAG,
        "langdml.role",
        "langdml.sweep_file",
        "langdml.gpu_ids",
        "langdml.node_id",
    }
    records = []
    for run in runs:
        tags = run.data.tags
        varied = {
            k.removeprefix("langdml."): parse_value(v)
            for k, v in tags.items()
            if k.startswith("langdml.") and k not in reserved
        }
        by_step: dict[int, dict[str, Any]] = {}
        for key in run.data.metrics:
            for metric in c.get_metric_history(run.info.run_id, key):
                by_step.setdefault(int(metric.step), {"epoch": int(metric.step)})[key] = metric.value
        records.append(
            {
                "name": tags[TRIAL_TAG],
                "varied": varied,
                "config": {k: parse_value(v) for k, v in run.data.params.items()},
                "run_id": run.info.run_id,
                "status": "TERMINATED" if run.info.status == "FINISHED" else "ERROR",
                "history": [by_step[s] for s in sorted(by_step)],
            }
        )
    return records
