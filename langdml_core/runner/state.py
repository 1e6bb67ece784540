"""A sweep's own state beside Tune's: its trials' table, the ids of its MLflow runs, and the driver lock.

Tune keeps its experiment state in the storage folder (or bucket); langdml writes two JSON files beside it
and refuses, before Ray or MLflow start, to overwrite a sweep's state without ``--resume`` or to resume
another sweep's. Ray is imported only by :func:`claim_state`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langdml_core.errors import ConfigError

TRIALS_FILE = "langdml_trials.json"
"""Beside Tune's experiment state: every trial's name, swept values and resolved config. Tune's parameter
space holds only the trial's name (and a search's sampled values), so Ray's console shows
``msim/plg/seed=0`` instead of a 60-row config; the configs reach trials through ``tune.with_parameters``
and a restored sweep reads them back from this file (its sweep file may have changed since)."""

Trials = dict[str, dict[str, Any]]
"""name -> {"config": flat config, "varied": swept values}; ``"search"`` holds a search's base config."""


def trials_table(trials) -> Trials:
    """The table of a sweep's trials (``Sweep.trials``), in JSON's types (tuples become lists)."""
    return json.loads(json.dumps({t.name: {"config": t.config, "varied": t.varied} for t in trials}))


def execution_order(trials: Trials) -> list[str]:
    """Trial names in the order Tune starts them: seed by seed (every setup's first seed, then every setup's
    second, ...), the sweep's own order within a seed. A sweep stopped halfway has every setup at its first
    seeds, not half of its setups at all of them; and trials that share one-off work (a setup's PLG
    pseudo-labels, its language tables) do not start side by side, where one would wait on the other's cache
    lock instead of training. Without a swept run.seed: the sweep's order."""
    seeds = [trial["varied"].get("run.seed") for trial in trials.values()]
    if any(seed is None for seed in seeds):
        return list(trials)
    rank = {seed: i for i, seed in enumerate(dict.fromkeys(seeds))}
    return sorted(trials, key=lambda name: rank[trials[name]["varied"]["run.seed"]])  # stable within a seed


MLFLOW_IDS_FILE = "langdml_mlflow.json"
"""Beside Tune's state: [experiment id, parent run id] of the sweep run it belongs to (a resumed sweep
continues its own MLflow runs, found by these ids, never by names)."""


def load_mlflow_ids(experiment_path: str) -> tuple[str, str] | None:
    ids = load_json(experiment_path, MLFLOW_IDS_FILE)
    return (str(ids[0]), str(ids[1])) if ids else None


def store_trials(experiment_path: str, trials: Trials, resume: bool) -> None:
    """Write :data:`TRIALS_FILE` for a new experiment; on ``--resume``, refuse stored state that belongs to
    another sweep (other trial names or configs: e.g. a --smoke run's, or an edited sweep file)."""
    stored = load_trials(experiment_path) if resume else None
    if stored is not None:
        stored = with_added_defaults(stored, trials)
    if stored is not None and stored != trials:
        raise ConfigError(
            f"--resume: the Tune state at {experiment_path} holds other trials than this sweep ({trials_diff(stored, trials)}); "
            "rerun without --resume and with another --storage to start this sweep, or undo the change."
        )
    store_json(experiment_path, TRIALS_FILE, trials)


def with_added_defaults(stored: Trials, current: Trials) -> Trials:
    """``stored`` with each config key it lacks but the current sweep's trial has, at langdml's default: a key
    added to langdml after the state was written (e.g. run.init_seed), whose default is what the stored trials
    ran with, so an upgrade in the middle of a sweep does not block its --resume. A non-default value of such a
    key is still a difference."""
    from langdml_core.config import TrialConfig

    defaults = json.loads(json.dumps(TrialConfig.from_dict({}).flat()))
    out = {}
    for name, trial in stored.items():
        config, now = trial.get("config"), current.get(name, {}).get("config")
        if isinstance(config, dict) and isinstance(now, dict):
            added = {k: defaults[k] for k in now if k not in config and k in defaults}
            trial = {**trial, "config": {**config, **added}}
        out[name] = trial
    return out


def load_trials(experiment_path: str) -> Trials | None:
    """The experiment's :data:`TRIALS_FILE` (None when there is none)."""
    return load_json(experiment_path, TRIALS_FILE)


def store_json(experiment_path: str, name: str, value: Any) -> None:
    """A JSON file of langdml's beside Tune's state (local folder or bucket)."""
    fs, path = _filesystem(experiment_path)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{name}") as stream:
        stream.write(json.dumps(value, indent=1).encode())


def load_json(experiment_path: str, name: str) -> Any:
    """A file written by :func:`store_json` (None when there is none)."""
    import pyarrow.fs

    fs, path = _filesystem(experiment_path)
    if fs.get_file_info(f"{path}/{name}").type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(f"{path}/{name}") as stream:
        return json.loads(stream.read())


def trials_diff(stored: Trials, current: Trials) -> str:
    """The first difference between two trial tables, in words."""
    if set(stored) != set(current):
        gone, new = sorted(set(stored) - set(current)), sorted(set(current) - set(stored))
        return f"trials only in the stored state: {gone[:3]}; only in the sweep: {new[:3]}"
    for name in sorted(current):
        old, now = stored[name]["config"], current[name]["config"]
        for key in sorted(set(old) | set(now)):
            if old.get(key) != now.get(key):
                return f"trial {name} {key}: stored {old.get(key)!r}, sweep {now.get(key)!r}"
    return "the trials' swept values differ"


def _filesystem(uri: str):
    """(pyarrow filesystem, path) for a local path or a URI (s3://, gs://, ...), as Tune's storage uses."""
    import pyarrow.fs

    if "://" in uri:
        return pyarrow.fs.FileSystem.from_uri(uri)
    return pyarrow.fs.LocalFileSystem(), str(Path(uri).absolute())


def claim_state(sweep_name: str, experiment_path: str, trials: Trials, resume: bool) -> bool:
    """Whether to restore the Tune state at ``experiment_path`` (``--resume`` and restorable). Refuses,
    before Ray or MLflow start, to overwrite a sweep's state without ``--resume`` or to resume another
    sweep's; records ``trials`` beside the state."""
    from ray import tune

    hold_driver_lock(sweep_name, experiment_path)
    restore = resume and tune.Tuner.can_restore(experiment_path)
    if not restore:
        refuse_overwrite(sweep_name, experiment_path, resume)
    store_trials(experiment_path, trials, resume=restore)
    return restore


DRIVER_LOCK = ".langdml_driver.lock"
_held_locks: dict[str, object] = {}  # experiment path -> its lock, held until the driver exits


def hold_driver_lock(sweep_name: str, experiment_path: str) -> None:
    """One driver per sweep state: a second one on the same storage is refused (two would log every epoch
    twice and race on Tune's files). Local storage only: a bucket has no locks; the lock ends with the process."""
    if "://" in experiment_path or experiment_path in _held_locks:
        return
    from filelock import FileLock, Timeout

    Path(experiment_path).mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(Path(experiment_path) / DRIVER_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"Sweep {sweep_name!r} is being run by another driver on {experiment_path}; wait for it to end, or "
            "pass --storage DIR (and --results DIR) to run a separate copy."
        ) from None
    _held_locks[experiment_path] = lock


def refuse_overwrite(sweep_name: str, experiment_path: str, resume: bool) -> None:
    if not resume and _has_state(experiment_path):
        raise ConfigError(
            f"Sweep {sweep_name!r} already has state at {experiment_path}; rerun with --resume to continue it, "
            "or pass --storage DIR to start a separate run."
        )


def _has_state(path: str) -> bool:
    return "://" not in path and Path(path).is_dir() and any(Path(path).glob("experiment_state*.json"))


FAILED_FILE = "failed.json"
"""Written into a trial's directory when it failed deterministically (a user error): retries stop at once."""


def clear_failure_markers(experiment_path: str) -> list[str]:
    """Remove the ``failed.json`` markers that stopped Tune's automatic retries of deterministic failures in
    an earlier run of the sweep; returns the removed paths."""
    import pyarrow.fs

    fs, root = _filesystem(experiment_path)
    removed = []
    for info in fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True)):
        marker = f"{info.path}/{FAILED_FILE}"
        if (
            info.type == pyarrow.fs.FileType.Directory
            and fs.get_file_info(marker).type == pyarrow.fs.FileType.File
        ):
            fs.delete_file(marker)
            removed.append(marker)
    return removed
