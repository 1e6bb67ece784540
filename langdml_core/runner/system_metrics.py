"""System metrics of a trial's MLflow run: MLflow's own monitor (CPU, memory, disk, network; GPU utilisation
and memory where NVIDIA's management library is installed, the ``gpu`` extra), sampled in a thread while
the trial trains and logged as ``system/...`` metrics beside its epochs.

The numbers are the node's, not the trial's alone (psutil reads the whole machine): trials that share a
node show the same CPU figures. Every 5 s by default (a trial shorter than that logs none); ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``
(seconds) changes it, ``LANGDML_SYSTEM_METRICS=0`` turns it off. A resumed trial continues its steps.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0
PREFIX = "system/"
"""MLflow's names for them (``system/cpu_utilization_percentage``); their steps are samples, not epochs."""


def enabled() -> bool:
    return os.environ.get("LANGDML_SYSTEM_METRICS", "1") != "0"


def start(run_id: str, tracking_uri: str):
    """A started ``SystemMetricsMonitor`` for the run (its ``finish()`` stops it and sends the rest), or
    None when turned off or unavailable (a warning says why; training goes on without it)."""
    if not enabled():
        return None
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines per trial
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=INTERVAL_SECONDS, resume_logging=True, tracking_uri=tracking_uri
        )
    except Exception as exc:  # psutil missing, or the server lost between two calls
        log.warning("No system metrics for MLflow run %s: %s", run_id, str(exc).splitlines()[0][:300])
        return None
    monitor.start()
    return monitor
