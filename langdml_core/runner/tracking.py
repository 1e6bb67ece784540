"""MLflow run lifecycle, owned by langdml (not by Ray's MLflow callback).

One experiment per sweep, one parent run per sweep (found by the ids kept in the sweep's state), one child
run per trial (:class:`~langdml_core.runner.trial_run.TrialRun`, its id kept in the trial's checkpoint, so a
retried or resumed trial continues the same run). Runs end FINISHED or FAILED. This module: the experiment
and parent run, the report on the parent run, closing runs, the backfill from Tune's files, and reading a
sweep's trial records back from MLflow.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from langdml_core.config import parse_value
from langdml_core.errors import ConfigError, TrackingError
from langdml_core.runner import system_metrics
from langdml_core.runner.records import (
    ERROR,
    ERROR_TAG,
    INCOMPLETE,
    ROLE_TAG,
    SWEEP_FILE_TAG,
    SWEEP_TAG,
    TERMINATED,
    TRIAL_TAG,
    TrialRecord,
    trial_tags,
    varied_from_tags,
)
from langdml_core.runner.tracking_store import check_tracking, client, redact
from langdml_core.runner.trial_run import PARENT_TAG, TrialRun, param_value, tracking_errors

log = logging.getLogger(__name__)
NOTE_TAG = "mlflow.note.content"
"""A run's description, rendered as markdown in the MLflow UI."""
DESCRIPTION_LIMIT = 8000
"""MLflow's longest tag value."""
ARTIFACTS_DIR = "mlartifacts"


def parent_run(
    tracking_uri: str, sweep: str, tags: dict[str, str] | None = None, known: tuple[str, str] | None = None
) -> tuple[str, str]:
    """(experiment id, parent run id) of a sweep run: ``known`` (the ids kept in a resumed sweep's state)
    reopened while MLflow still has that run, else a new parent run. Runs are never looked up by name: a
    fresh sweep (new storage, another configuration) never attaches to an older one's runs."""
    c = client(tracking_uri)
    if known is not None:
        from mlflow.exceptions import MlflowException

        try:
            if c.get_run(known[1]).info.status != "RUNNING":
                c.update_run(known[1], status="RUNNING")
            return known
        except MlflowException:  # e.g. a new database: the sweep's record starts again
            log.warning(
                "MLflow at %s has no run %s; the sweep gets a new parent run.", redact(tracking_uri), known[1]
            )
    experiment = c.get_experiment_by_name(sweep)
    experiment_id = experiment.experiment_id if experiment else _create_experiment(c, tracking_uri, sweep)
    run = c.create_run(
        experiment_id, run_name=sweep, tags={SWEEP_TAG: sweep, ROLE_TAG: "parent", **(tags or {})}
    )
    return experiment_id, run.info.run_id


def _create_experiment(c, tracking_uri: str, sweep: str) -> str:
    """Create the sweep's experiment; another process that created it meanwhile is no error."""
    from mlflow.exceptions import MlflowException

    try:
        return c.create_experiment(sweep, artifact_location=artifact_location(tracking_uri, sweep))
    except MlflowException:
        experiment = c.get_experiment_by_name(sweep)
        if experiment is None:
            raise
        return experiment.experiment_id


def parent_run_id(tracking_uri: str, sweep: str) -> str | None:
    """The sweep's newest parent run, without changing anything (None when the sweep has none)."""
    c = client(tracking_uri)
    experiment = c.get_experiment_by_name(sweep)
    found = _parent_runs(c, experiment.experiment_id, sweep) if experiment else []
    return found[0].info.run_id if found else None


def _parent_runs(c, experiment_id: str, sweep: str) -> list:
    return c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{ROLE_TAG}` = 'parent'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )


def artifact_location(tracking_uri: str, sweep: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store, ``<results>/mlartifacts/<sweep>``
    (MLflow's own default is ``./mlruns`` in whatever directory the driver ran); a server decides for itself."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    folder = re.sub(r"[^\w.=-]+", "_", sweep)
    return (Path(tracking_uri.removeprefix("sqlite:///")).parent / ARTIFACTS_DIR / folder).as_uri()


def record_report(tracking_uri: str, run_id: str, sweep, report_dir: Path, text: str) -> bool:
    """Make a sweep's parent run its readable record: the report, then the sweep file's docstring, as the run's
    description (rendered in the UI), the report folder's files (table.md, plots, trials.parquet) and the sweep file as artifacts, and the
    settings every trial shares as params. Warns and returns False when MLflow cannot be reached."""
    from mlflow.entities import Param

    c = client(tracking_uri)
    shared = _shared_config(sweep.trials)
    doc = (getattr(sweep.module, "__doc__", None) or "").strip()
    # the table first: the UI shows the top of the description without a click; the sweep's docstring after it
    text = text.removeprefix(f"# {sweep.name}\n\n")  # the run page's title is the sweep's name already
    description = text + (f"\n\n## The sweep file ({Path(sweep.path).name})\n\n{doc}" if doc else "")
    if len(description) > DESCRIPTION_LIMIT:
        description = (
            description[: DESCRIPTION_LIMIT - 80] + "\n\n... (cut here: the whole report is report/table.md)"
        )
    try:
        check_tracking(tracking_uri)  # one request, not MLflow's minutes of retries, when the server is gone
        c.set_tag(run_id, NOTE_TAG, description)
        params = [Param(k, param_value(v)) for k, v in sorted(shared.items())]
        params += [
            Param("sweep.trials", str(len(sweep.trials))),
            Param("sweep.varied", ",".join(_varied_keys(sweep))),
        ]
        existing = c.get_run(run_id).data.params
        params = [p for p in params if p.key not in existing]  # a resumed sweep logs them once
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            c.log_batch(run_id, params=params[start : start + 100])
        for path in sorted(Path(report_dir).iterdir()):
            if path.is_file():
                c.log_artifact(run_id, str(path), artifact_path="report")
        c.log_artifact(run_id, str(sweep.path), artifact_path="sweep")
    except Exception as exc:
        if not isinstance(exc, tracking_errors()):
            raise
        log.warning(
            "MLflow at %s did not take the sweep's report (%s); the parent run has none yet (rerun `langdml report`).",
            redact(tracking_uri),
            str(exc).splitlines()[0][:300],
        )
        return False
    return True


def _shared_config(trials) -> dict[str, Any]:
    """The config values all trials share (the sweep's fixed settings)."""
    if not trials:
        return {}
    first = trials[0].config
    return {k: v for k, v in first.items() if all(t.config.get(k) == v for t in trials[1:])}


def _varied_keys(sweep) -> list[str]:
    keys: dict[str, None] = {}
    for trial in sweep.trials:
        keys.update(dict.fromkeys(trial.varied))
    return list(keys)


def end_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> bool:
    """End a run; when the server is unreachable say so (``--sync-mlflow`` ends it later) and go on."""
    try:
        check_tracking(tracking_uri)  # one request, not MLflow's minutes of retries, when the server is gone
        client(tracking_uri).set_terminated(run_id, status=status)
    except Exception as exc:
        if not isinstance(exc, tracking_errors()):
            raise
        log.warning(
            "MLflow at %s is unreachable (%s); run %s stays open until `langdml report SWEEP --sync-mlflow`.",
            redact(tracking_uri),
            str(exc).splitlines()[0][:300],
            run_id,
        )
        return False
    return True


def close_open_trial_runs(tracking_uri: str, parent_run_id: str, records: list[TrialRecord]) -> int:
    """End the trial runs that their trial could not end as Tune did: each child run of ``parent_run_id``
    still RUNNING (its worker was killed before it could end it) gets the status Tune recorded for its trial
    (finished -> FINISHED, ERROR -> FAILED, else KILLED), and a KILLED one whose trial Tune counts as
    finished (the scheduler stopped it early, e.g. ASHA: its worker sees only a stop) becomes FINISHED.
    Returns how many it changed; an unreachable server is a warning (``--sync-mlflow`` ends them later)."""
    wanted = {
        r.name: "FINISHED" if r.status == TERMINATED else "FAILED" if r.status == ERROR else "KILLED"
        for r in records
    }
    try:
        check_tracking(tracking_uri)  # one request, not minutes of MLflow's retries, when the server is gone
        c = client(tracking_uri)
        experiment_id = c.get_run(parent_run_id).info.experiment_id
        runs = c.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status != 'FINISHED'",
            max_results=50000,
        )  # (MLflow compares a status with one value only)
    except tracking_errors() as exc:
        log.warning("MLflow at %s is unreachable (%s); open trial runs stay open.", redact(tracking_uri), exc)
        return 0
    ended = 0
    for run in runs:
        status = wanted.get(run.data.tags.get(TRIAL_TAG, ""))
        if status is not None and (
            run.info.status == "RUNNING" or (run.info.status == "KILLED" and status == "FINISHED")
        ):
            ended += end_run(tracking_uri, run.info.run_id, status)
    return ended


SUMMARY_PREFIXES = ("last/", "best_test_epoch/", "val_selected/")
"""Metrics of a trial's protocol summary (``TrialRun.log_summary``), not of an epoch."""


def sync_records(
    tracking_uri: str, sweep, records: list[TrialRecord], known: tuple[str, str] | None = None
) -> dict[str, int]:
    """Backfill MLflow from Tune's records (after the tracking server was lost): the sweep's parent run (by
    the ids kept in its state, ``known``), each trial's run found under it by trial name or created, missing
    epochs logged (each step once), and ended."""
    experiment_id, parent = parent_run(tracking_uri, sweep.name, {SWEEP_FILE_TAG: str(sweep.path)}, known)
    counts = {"runs": 0, "epochs_sent": 0}
    for record in records:
        run = TrialRun(
            tracking_uri,
            experiment_id,
            parent,
            record.name,
            tags=trial_tags(sweep.name, record.varied),
        )
        if not run._connected:
            raise TrackingError(
                f"MLflow at {redact(tracking_uri)} is unreachable; start it and rerun --sync-mlflow."
            )
        run.log_params(record.config)
        before = len(run._logged_steps)
        for row in record.history:
            run.log_epoch({k: v for k, v in row.items() if k == "epoch" or _is_metric(k)})
        counts["runs"] += 1
        counts["epochs_sent"] += len(run._logged_steps) - before
        run.end("FINISHED" if record.finished else "FAILED")
    failed = not all(r.finished for r in records)
    end_run(tracking_uri, parent, "FAILED" if failed else "FINISHED")
    return counts


def _is_metric(key: str) -> bool:
    """A langdml metric (``test/recall_at_1``), not one of Tune's bookkeeping or config columns."""
    return "/" in key and not key.startswith("config/")


def records_from_mlflow(tracking_uri: str, sweep: str, parent: str | None = None) -> list[TrialRecord]:
    """Per-trial records rebuilt from the MLflow runs of one run of a sweep (each trial run: tags, params,
    metric history): the children of ``parent`` (default: the sweep's newest parent run)."""
    c = client(tracking_uri)
    experiment = c.get_experiment_by_name(sweep)
    parent = parent or parent_run_id(tracking_uri, sweep)
    if experiment is None or parent is None:
        raise ConfigError(
            f"MLflow at {redact(tracking_uri)} has no run of sweep {sweep!r}; run the sweep first."
        )
    runs = c.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent}' and tags.`{TRIAL_TAG}` != ''",
        max_results=50000,
        order_by=["attributes.start_time ASC"],
    )
    records = []
    for run in runs:
        tags = run.data.tags
        by_step: dict[int, dict[str, Any]] = {}
        for key in run.data.metrics:
            if key.startswith((*SUMMARY_PREFIXES, system_metrics.PREFIX)):  # the summary, samples: no epochs
                continue
            for metric in c.get_metric_history(run.info.run_id, key):
                by_step.setdefault(int(metric.step), {"epoch": int(metric.step)})[key] = metric.value
        finished = run.info.status == "FINISHED"
        status = TERMINATED if finished else ERROR if run.info.status == "FAILED" else INCOMPLETE
        records.append(
            TrialRecord(
                name=tags[TRIAL_TAG],
                varied=varied_from_tags(tags),
                config={k: parse_value(v) for k, v in run.data.params.items()},
                status=status,
                error="" if status != ERROR else tags.get(ERROR_TAG, f"MLflow run status {run.info.status}"),
                history=[by_step[s] for s in sorted(by_step)],
                run_id=run.info.run_id,
            )
        )
    return records
