"""The MLflow run of one trial (:class:`TrialRun`): found or created once, its params, one row of metrics
per epoch, its summary, datasets and artifacts, then ended; tracking never stops training.

The sweep's side (experiment, parent run, report, backfill, reading runs back) is :mod:`.tracking`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from langdml_core.errors import ConfigError, TrackingError
from langdml_core.runner import system_metrics
from langdml_core.runner.records import EVAL_TAG_PREFIX, TRIAL_TAG
from langdml_core.runner.tracking_store import client, redact

log = logging.getLogger(__name__)
PARENT_TAG = "mlflow.parentRunId"
SEND_TRIES = 3
"""Tries of a one-shot write (tags, datasets, artifacts, the summary) before it is given up with a warning."""


def tracking_errors() -> tuple[type[BaseException], ...]:
    from mlflow.exceptions import MlflowException

    return (MlflowException, OSError, TrackingError)


def metrics_at(values: dict[str, Any], step: int) -> list:
    """MLflow metrics of the finite numbers in ``values`` at ``step``; how they were computed (``test/knn_k``,
    ``test/nmi_seed``, ...) is not among them (tags, see ``log_epoch``)."""
    from mlflow.entities import Metric

    from langdml_core.evaluate.options import is_provenance

    now = int(time.time() * 1000)
    return [
        Metric(k, float(v), now, step)
        for k, v in values.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(float(v))
        and not is_provenance(k)
    ]


def param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def quote(text: str) -> str:
    return text.replace("'", "\\'")


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
        self._unsent: list[tuple[Any, int]] = []  # one-shot writes not sent yet, with the tries they had
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
            if not isinstance(exc, tracking_errors()):
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
            self._drain()
            fn(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, tracking_errors()):
                raise
            self._lost(exc)
            return False
        self._warned = False
        return True

    def _send(self, write) -> bool:
        """A one-shot write: sent now, or kept and sent before the next call that reaches MLflow (at the
        latest by :meth:`end`). Kept through a lost server, and through a race that fails once: two trials
        finishing together both create the same dataset row, and the second insert fails."""
        self._unsent.append((write, 0))
        return self._call(lambda: None)

    def _drain(self) -> None:
        while self._unsent:
            write, tries = self._unsent[0]
            try:
                write()
            except Exception as exc:
                if not isinstance(exc, tracking_errors()):  # a bug, not MLflow: raised once, not again
                    self._unsent.pop(0)
                    raise
                if tries + 1 >= SEND_TRIES:
                    self._unsent.pop(0)
                    log.warning(
                        "MLflow run %s: a write failed %d times and was given up (%s).",
                        self.run_id,
                        SEND_TRIES,
                        str(exc).splitlines()[0][:300],
                    )
                    continue
                self._unsent[0] = (write, tries + 1)
                raise
            self._unsent.pop(0)

    def _find(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' "
            f"and tags.`{TRIAL_TAG}` = '{quote(self.trial_name)}'",
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
            if k in existing and existing[k] != param_value(v) and k not in RESUMABLE
        ]
        if changed:
            k = changed[0]
            raise ConfigError(
                f"MLflow run {self.run_id} ({self.trial_name}) was logged with {k}={existing[k]}, but this trial "
                f"has {k}={param_value(self._params[k])}; it is another experiment: start it with another "
                "--storage (a new sweep state gets new MLflow runs)."
            )
        new = [Param(k, param_value(v)) for k, v in self._params.items() if k not in existing]
        for start in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[start : start + 100])

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Metrics of one epoch at step = epoch, once: a replayed epoch after a resume is not logged twice;
        rows that could not be sent are sent with the next one."""
        self._pending.append(dict(row))
        self._call(self._flush)

    def _flush(self) -> None:
        from mlflow.entities import RunTag

        from langdml_core.evaluate.options import is_provenance

        while self._pending:
            row = self._pending[0]
            step = int(row["epoch"])
            if step not in self._logged_steps:
                metrics = metrics_at(row, step)
                # how the metrics were computed (knn_k, nmi_seed, ...): tags of the last evaluated epoch
                tags = [RunTag(f"{EVAL_TAG_PREFIX}{k}", str(v)) for k, v in row.items() if is_provenance(k)]
                self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
                self._logged_steps.add(step)
            self._pending.pop(0)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)
        self._send(lambda: [self.client.set_tag(self.run_id, k, v) for k, v in tags.items()])

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).exists():
            self._send(lambda: self.client.log_artifact(self.run_id, str(path)))

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
        self._send(lambda: self.client.log_inputs(self.run_id, datasets=inputs))

    def log_summary(self, summary: dict[str, float]) -> None:
        """A finished trial's protocol summary (``best_test_epoch/test/recall_at_1``, ``.../epoch``, ...), at
        the step of its last epoch; how the metrics were computed (``.../test/knn_k``) stays in the tags."""
        metrics = metrics_at(summary, int(summary.get("last/epoch", 0)))
        self._send(lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def end(self, status: str = "FINISHED") -> bool:
        """Send what is pending and end the run; False when the server could not be reached."""
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        return self._call(self._flush) and self._call(
            lambda: self.client.set_terminated(self.run_id, status=status)
        )
