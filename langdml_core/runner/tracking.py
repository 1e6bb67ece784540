"""MLflow run lifecycle, owned by langdml (not by Ray's MLflow callback).

One experiment per sweep, one parent run per sweep (reused on resume), one child run per trial. A trial's
run is looked up by (parent run, trial name) before one is created, and its id is kept in the trial's
checkpoint, so a retried or resumed trial continues the same run. Runs end FINISHED or FAILED.
Only real metrics are logged, with step = epoch; names are the evaluator's (``test/recall_at_1``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from langdml_core.config import parse_value
from langdml_core.errors import ConfigError, TrackingError
from langdml_core.runner import system_metrics
from langdml_core.runner.records import (
    ERROR,
    ERROR_TAG,
    EVAL_TAG_PREFIX,
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

log = logging.getLogger(__name__)
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
"""A run's description, rendered as markdown in the MLflow UI."""
DESCRIPTION_LIMIT = 8000
"""MLflow's longest tag value."""
ARTIFACTS_DIR = "mlartifacts"


def _tracking_errors() -> tuple[type[BaseException], ...]:
    from mlflow.exceptions import MlflowException

    return (MlflowException, OSError, TrackingError)


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
        params = [Param(k, _param_value(v)) for k, v in sorted(shared.items())]
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
        if not isinstance(exc, _tracking_errors()):
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
        if not isinstance(exc, _tracking_errors()):
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
    except _tracking_errors() as exc:
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


class TrialRun:
    """The MLflow run of one trial: found or created once, then metrics per epoch, then ended.

    Tracking never stops training: when the server cannot be reached, the call is skipped with a warning,
    the epoch rows are kept and sent at the next successful call (each step once), and a run that could not
    be ended is closed later by ``langdml report SWEEP --sync-mlflow`` from Tune's result files.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        trial_name: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        system_metrics: bool = False,
    ):
        self.uri, self.experiment_id, self.parent_run_id = tracking_uri, experiment_id, parent_run_id
        self._system_metrics, self._monitor = system_metrics, None  # runner.system_metrics, while training
        self.trial_name, self.run_id, self.tags = trial_name, run_id, dict(tags or {})
        self.client = client(tracking_uri)
        self._logged_steps: set[int] = set()
        self._pending: list[dict[str, Any]] = []
        self._params: dict[str, Any] = {}
        self._connected = False
        self._warned = False
        self._connect()

    # ---- connection ----
    def _connect(self) -> bool:
        if self._connected:
            return True
        try:
            self.run_id = self.run_id or self._find()
            if self.run_id is None:
                run = self.client.create_run(
                    self.experiment_id,
                    run_name=self.trial_name,
                    tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: self.trial_name, **self.tags},
                )
                self.run_id = run.info.run_id
            else:
                self.client.update_run(self.run_id, status="RUNNING")
            self._logged_steps = {int(m.step) for m in self.client.get_metric_history(self.run_id, "epoch")}
            self._connected = True
            if self._system_metrics and self._monitor is None:
                self._monitor = system_metrics.start(self.run_id, self.uri)
            if self._params:
                self._log_params()
        except Exception as exc:
            if not isinstance(exc, _tracking_errors()):
                raise
            self._lost(exc)
        return self._connected

    def _lost(self, exc: BaseException) -> None:
        self._connected = False
        if not self._warned:  # once per outage
            log.warning(
                "MLflow at %s is unreachable (%s); training continues, metrics stay in Tune's result files "
                "and are sent when it answers again (or run `langdml report SWEEP --sync-mlflow`).",
                redact(self.uri),
                str(exc).splitlines()[0][:300],
            )
            self._warned = True

    def _call(self, fn, *args, **kwargs) -> bool:
        if not self._connect():
            return False
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, _tracking_errors()):
                raise
            self._lost(exc)
            return False
        self._warned = False
        return True

    def _find(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' "
            f"and tags.`{TRIAL_TAG}` = '{_quote(self.trial_name)}'",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0].info.run_id if runs else None

    # ---- logging ----
    def log_params(self, params: dict[str, Any]) -> None:
        self._params = dict(params)
        self._call(self._log_params)

    def _log_params(self) -> None:
        from mlflow.entities import Param

        from langdml_core.rundir import RESUMABLE  # keys a resumed run may change (threads, out_dir, ...)

        existing = self.client.get_run(self.run_id).data.params
        changed = [
            k
            for k, v in self._params.items()
            if k in existing and existing[k] != _param_value(v) and k not in RESUMABLE
        ]
        if changed:
            k = changed[0]
            raise ConfigError(
                f"MLflow run {self.run_id} ({self.trial_name}) was logged with {k}={existing[k]}, but this trial "
                f"has {k}={_param_value(self._params[k])}; it is another experiment: start it with another "
                "--storage (a new sweep state gets new MLflow runs)."
            )
        new = [Param(k, _param_value(v)) for k, v in self._params.items() if k not in existing]
        for start in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[start : start + 100])

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Metrics of one epoch at step = epoch, once: a replayed epoch after a resume is not logged twice;
        rows that could not be sent are sent with the next one."""
        self._pending.append(dict(row))
        self._call(self._flush)

    def _flush(self) -> None:
        from mlflow.entities import Metric, RunTag

        from langdml_core.evaluate.options import is_provenance

        while self._pending:
            row = self._pending[0]
            step = int(row["epoch"])
            if step not in self._logged_steps:
                now = int(time.time() * 1000)
                metrics = [
                    Metric(k, float(v), now, step)
                    for k, v in row.items()
                    if isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and math.isfinite(float(v))
                    and not is_provenance(k)
                ]
                # how the metrics were computed (knn_k, nmi_seed, ...): tags of the last evaluated epoch
                tags = [RunTag(f"{EVAL_TAG_PREFIX}{k}", str(v)) for k, v in row.items() if is_provenance(k)]
                self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
                self._logged_steps.add(step)
            self._pending.pop(0)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)
        self._call(lambda: [self.client.set_tag(self.run_id, k, v) for k, v in tags.items()])

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).exists():
            self._call(lambda: self.client.log_artifact(self.run_id, str(path)))

    def log_datasets(self, record: dict[str, Any]) -> None:
        """Each split of ``dataset.json`` (``train.write_dataset_record``) as an MLflow dataset input, its
        context tag the split: the UI's Dataset column and the run's Inputs show what the trial used."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(
                    name=f"{record['name']}-{split}",
                    digest=info["digest"][:16],
                    source_type="local" if record["source"] != "generated" else "code",
                    source=json.dumps({"uri": record["source"]}),
                    profile=json.dumps({"num_images": info["images"], "num_classes": info["classes"]}),
                ),
                tags=[InputTag("mlflow.data.context", split)],
            )
            for split, info in record["splits"].items()
        ]
        self._call(lambda: self.client.log_inputs(self.run_id, datasets=inputs))

    def log_summary(self, summary: dict[str, float]) -> None:
        """A finished trial's protocol summary (``best_test_epoch/test/recall_at_1``, ``.../epoch``, ...), at
        the step of its last epoch; how the metrics were computed (``.../test/knn_k``) stays in the tags."""
        from mlflow.entities import Metric

        from langdml_core.evaluate.options import is_provenance

        step, now = int(summary.get("last/epoch", 0)), int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in summary.items()
            if math.isfinite(float(v)) and not is_provenance(k)
        ]
        self._call(lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def end(self, status: str = "FINISHED") -> bool:
        """Send what is pending and end the run; False when the server could not be reached."""
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        return self._call(self._flush) and self._call(
            lambda: self.client.set_terminated(self.run_id, status=status)
        )


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


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


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
            if key.startswith(SUMMARY_PREFIXES):  # the summary, not an epoch
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
