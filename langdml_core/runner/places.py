"""Where a sweep's state lives, resolved in one place: Tune storage, the MLflow tracking URI, the results
directory, and the names of a sweep's Tune experiments.

Each place comes from its flag, else its environment variable, else a default under the results directory
(``--storage`` / ``LANGDML_STORAGE`` / ``results/ray``; ``--tracking-uri`` / ``MLFLOW_TRACKING_URI`` /
``sqlite:///results/mlflow.db``). ``langdml sweep``, ``langdml report``, ``langdml ui`` and the search all
call :func:`resolve_places`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

STORAGE_ENV = "LANGDML_STORAGE"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
SEARCH_SUFFIX = "-search"
"""A search sweep's first phase (TPE + ASHA proposals) is the Tune experiment ``<sweep>-search``."""
SMOKE_SUFFIX = "-smoke"
"""A ``--smoke`` run is a sweep of its own, ``<sweep>-smoke``: its Tune state, MLflow experiment and results
folder never mix with the real sweep's."""
FINAL_SUFFIX = "-final"
"""A search sweep's second phase (the retrain of the best setting) is the Tune experiment ``<sweep>-final``."""


@dataclass(frozen=True)
class Places:
    results: Path
    """Absolute results directory: tables, parquet, plots and the default MLflow database."""
    storage: str
    """Tune storage path: an absolute local path or a URI (s3://...)."""
    tracking_uri: str
    """MLflow tracking URI (may carry user:password@; print it through ``tracking_store.redact``)."""

    def tune_path(self, experiment: str) -> str:
        """The folder of one Tune experiment (see :func:`tune_experiments`) under the storage."""
        return os.path.join(self.storage, experiment)


def resolve_places(
    results: str | Path = "results", storage: str | None = None, tracking_uri: str | None = None
) -> Places:
    """Flags first, then the environment, then defaults under ``results``."""
    results_dir = Path(results).expanduser().absolute()
    store = storage or os.environ.get(STORAGE_ENV) or str(results_dir / "ray")
    if "://" not in store:
        store = str(Path(store).expanduser().absolute())
    uri = tracking_uri or os.environ.get(TRACKING_ENV) or default_tracking_uri(results_dir)
    return Places(results_dir, store, uri)


def default_tracking_uri(results_dir: str | Path = "results") -> str:
    """A SQLite database under results/ (absolute path: trials run in other working directories)."""
    path = Path(results_dir).expanduser().absolute() / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def tune_experiments(sweep_name: str, search: bool = False) -> list[str]:
    """The Tune experiments of a sweep: its name; for a search, ``<name>-search`` then ``<name>-final``.
    The MLflow experiment is always the sweep's name."""
    return [sweep_name + SEARCH_SUFFIX, sweep_name + FINAL_SUFFIX] if search else [sweep_name]


def ui_command(places: Places) -> str:
    """The command that opens the MLflow UI on this sweep's record, as it can be typed here: the venv's
    ``langdml`` by its path when it is not on PATH, ``--results`` only when not the default, the tracking
    URI only when it is not the results folder's own database (credentials never shown)."""
    import shutil
    import sys

    from langdml_core.runner.tracking_store import redact

    script = Path(sys.executable).parent / "langdml"
    command = "langdml"
    if shutil.which("langdml") != str(script) and script.exists():
        relative = os.path.relpath(script)  # .venv/bin/langdml from the repository root
        command = relative if not relative.startswith("..") else str(script)
    if places.tracking_uri != default_tracking_uri(places.results):
        return f"{command} ui --tracking-uri {redact(places.tracking_uri)}"
    results = os.path.relpath(places.results)
    return f"{command} ui" + ("" if results == "results" else f" --results {results}")


def full_storage(storage: str, needed: int = 1 << 20) -> str | None:
    """The local storage folder when less than ``needed`` bytes are free there, else None (remote storage:
    its own errors say what happened)."""
    if "://" in storage and not storage.startswith("file://"):
        return None
    path = storage.removeprefix("file://")
    try:
        return path if shutil.disk_usage(path).free < needed else None
    except OSError:
        return None
