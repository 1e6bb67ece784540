"""The Ray Tune side: ``train_trial`` as a function trainable, and building/running/resuming the Tuner.

Ray itself is imported inside the functions that need it, so listing and reporting sweeps need no Ray.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langdml_core.config import TrialConfig
from langdml_core.errors import ConfigError, DiskFullError, TrackingError, UserError
from langdml_core.runner.language_effect import embeddings_loader
from langdml_core.runner.places import Places, full_storage, resolve_places, ui_command
from langdml_core.runner.provenance import (
    PROVENANCE_PREFIX,
    SOURCE_PREFIX,
    git_provenance,
    package_versions,
    source_tags,
)
from langdml_core.runner.records import (
    ERROR,
    ERROR_TAG,
    GPU_IDS_TAG,
    INCOMPLETE,
    NODE_ID_TAG,
    SWEEP_FILE_TAG,
    TERMINATED,
    TrialRecord,
    trial_tags,
)
from langdml_core.runner.report import missing_trials, protocol_summary, write_report
from langdml_core.runner.resources import check_trial_cpus, gpus_per_trial, trial_device
from langdml_core.runner.search_spec import searched_name
from langdml_core.runner.state import (
    FAILED_FILE,
    MLFLOW_IDS_FILE,
    TRIALS_FILE,
    Trials,
    claim_state,
    clear_failure_markers,
    execution_order,
    load_mlflow_ids,
    load_trials,
    store_json,
    trials_table,
)
from langdml_core.runner.sweep_file import Sweep
from langdml_core.runner.tracking import close_open_trial_runs, end_run, parent_run, record_report
from langdml_core.runner.tracking_store import check_tracking
from langdml_core.runner.trial_run import TrialRun

PROVENANCE_TAGS = (SOURCE_PREFIX, PROVENANCE_PREFIX)  # the commit and source file; package versions

CHECKPOINT_FILE = "checkpoint.pt"
RETRIED_ERRORS = (DiskFullError, TrackingError)
"""The user errors whose cause may pass (space freed, server back): Tune retries these trials. Any other
(a NaN loss, a bad size or image found inside a trial) would recur, so the trial fails once, not 3 times."""
log = logging.getLogger(__name__)
# Ray folds worker lines that differ only in numbers ("[msim/seed=0] epoch 2 ..." and seed=1) into one
# "[repeated 2x across cluster]": every trial's lines must stay visible. Ray reads this when first imported.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def trainable(params: dict[str, Any], tracking: dict[str, str], trials: Trials) -> None:
    """Ray Tune function trainable around ``train_trial``: threads = CPU share, resume from Tune's
    checkpoint, per-epoch ``tune.report`` with a checkpoint, and the trial's MLflow run kept in it.
    ``tracking`` (MLflow URI and parent run) and ``trials`` come through ``tune.with_parameters``: they
    stay out of Tune's per-trial files and console."""
    import ray
    import torch
    from ray import tune

    from langdml_core.checkpoint import evaluated_weights
    from langdml_core.evaluate import EMBEDDINGS_FILE
    from langdml_core.evaluate.examples import EXAMPLES_FILE
    from langdml_core.runner.logged_model import log_embedding_model
    from langdml_core.train import (  # torch, timm: where a trial runs, not to list one
        DATASET_FILE,
        train_trial,
    )

    # A lost tracking server must cost seconds per epoch, not MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    trial = resolve_trial(params, trials)
    context = tune.get_context()
    cpus = context.get_trial_resources().required_resources.get("CPU", 1)
    out_dir = Path(context.get_trial_dir()).absolute()
    flat = {
        **trial["config"],
        "run.device": trial_device(trial["config"].get("run.device", "auto"), ray.get_gpu_ids()),
        "run.threads": max(1, int(cpus)),
        "run.progress": False,
        "run.out_dir": str(out_dir),
    }
    config = TrialConfig.from_dict(flat)

    storage = context.get_storage()
    resume_state = resume_from_tune(
        tune.get_checkpoint(), (storage.storage_filesystem, storage.trial_fs_path)
    )
    extra = {"mlflow_run_id": (resume_state or {}).get("extra", {}).get("mlflow_run_id")}
    run = TrialRun(
        tracking["uri"],
        tracking["experiment_id"],
        tracking["parent_run_id"],
        trial["name"],
        run_id=extra["mlflow_run_id"],
        tags=trial_tags(tracking["sweep"], trial["varied"]),
        system_metrics=True,
    )
    extra["mlflow_run_id"] = (
        run.run_id
    )  # None while MLflow is unreachable; the checkpoint keeps it once known
    run.log_params(config.flat())
    for row in (resume_state or {}).get("history", []):  # epochs trained but not yet logged (idempotent)
        run.log_epoch(row)
    placement = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "threads": int(flat["run.threads"]),
        "pid": os.getpid(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "placement.json").write_text(json.dumps(placement))
    run.set_tags({GPU_IDS_TAG: ",".join(placement["gpu_ids"]), NODE_ID_TAG: placement["node_id"]})
    run.set_tags(
        {**{k: v for k, v in tracking.items() if k.startswith(PROVENANCE_TAGS)}, **package_versions()}
    )

    failed = out_dir / FAILED_FILE
    if failed.is_file():  # a deterministic failure (NaN, a bad input) is not worth Tune's retries
        run.end("FAILED")
        raise UserError(json.loads(failed.read_text())["error"] + " (not retried: it would recur)")

    # the newest evaluated weights (the moving average with optim.ema): the logged model's
    final = {"model": evaluated_weights(resume_state) if resume_state else None}

    def report(row: dict[str, Any], state: dict[str, Any]) -> None:
        final["model"] = evaluated_weights(state)
        run.log_epoch(row)
        extra["mlflow_run_id"] = extra["mlflow_run_id"] or run.run_id
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state, Path(directory) / CHECKPOINT_FILE)
            tune.report(console_order(row), checkpoint=tune.Checkpoint.from_directory(directory))

    try:
        summary = (
            train_trial(  # Tune's checkpoints are the trial's one checkpoint home: none of its own besides
                config,
                on_epoch_end=report,
                resume_state=resume_state,
                extra_state=extra,
                label=trial["name"],
                local_checkpoints=False,
            )
        )
        run.log_summary(protocol_summary(summary["history"]))
        if (out_dir / DATASET_FILE).is_file():
            record = json.loads((out_dir / DATASET_FILE).read_text())
            run.log_datasets(record)
            if final["model"] is not None:
                log_embedding_model(run, config, final["model"], record["default_image_size"])
        for artifact in (
            "config.json",
            "metrics.json",
            "plg_pseudo_labels.csv",
            DATASET_FILE,
            EMBEDDINGS_FILE,
            EXAMPLES_FILE,
        ):
            run.log_artifact(out_dir / artifact)
    except UserError as exc:
        if isinstance(exc, RETRIED_ERRORS):
            run.end("FAILED")
            raise
        failed.write_text(json.dumps({"error": str(exc)}))
        run.set_tags({ERROR_TAG: str(exc)[:4000]})
        run.end("FAILED")
        raise
    except BaseException as exc:  # stopped by Tune or Ctrl-C: KILLED, not failed
        run.end("FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    run.end("FINISHED")


CONSOLE_FIRST = ("epoch", "test/recall_at_1", "test/map_at_r", "val/recall_at_1")
"""Ray's progress table shows the first four metrics of a trial's result: these, in this order."""


def console_order(row: dict[str, Any]) -> dict[str, Any]:
    """The row as Tune gets it: :data:`CONSOLE_FIRST` first, without the evaluation's provenance numbers
    (``test/knn_k``, ...: MLflow keeps them as tags)."""
    from langdml_core.evaluate.options import is_provenance

    metrics = {k: v for k, v in row.items() if not is_provenance(k)}
    return {**{k: metrics[k] for k in CONSOLE_FIRST if k in metrics}, **metrics}


def trial_name(trial) -> str:
    """Tune's name for a trial (console, experiment state, worker lines): the sweep's own name for it."""
    search = trial.config.get("search")
    return searched_name(search) if search else trial.config["trial"]


def trainable_for(tracking: dict[str, str], trials: Trials, resources: dict[str, float]):
    """The trainable as Tune runs it: MLflow coordinates and the trials' configs attached, resources
    requested."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(trainable, tracking=tracking, trials=trials), resources)


def resume_from_tune(checkpoint, trial_folder: tuple[Any, str] | None = None) -> dict[str, Any] | None:
    """The newest readable training state among a trial's checkpoint folders in Tune's storage, or None.

    ``checkpoint`` is the one Tune recorded; ``trial_folder`` (pyarrow filesystem, path) is where the trial's
    checkpoint folders live, so that one persisted after it (the worker uploads a checkpoint before the
    driver records it: a driver killed in between) is found too. A truncated or corrupt newest checkpoint
    (a node lost mid-upload) is skipped with a warning."""
    import io

    import torch

    candidates: dict[str, Any] = {}  # path -> filesystem
    if trial_folder is not None:
        fs, folder = trial_folder
        candidates |= {p: fs for p in _checkpoint_folders(fs, folder)}
    if checkpoint is not None:
        candidates.setdefault(checkpoint.path, checkpoint.filesystem)
        candidates |= {
            p: checkpoint.filesystem
            for p in _checkpoint_folders(
                checkpoint.filesystem, checkpoint.path.rstrip("/").rpartition("/")[0]
            )
        }
    for path in sorted(candidates, key=lambda p: p.rstrip("/").rpartition("/")[2], reverse=True):
        try:
            with candidates[path].open_input_stream(f"{path}/{CHECKPOINT_FILE}") as stream:
                return torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or corrupt file: say so and try the previous one
            log.warning("Tune checkpoint %s is unreadable (%s); falling back to the previous one.", path, exc)
    return None


def _checkpoint_folders(fs, folder: str) -> list[str]:
    """Tune's checkpoint_NNNNNN folders directly under ``folder`` (none when it does not exist)."""
    import pyarrow.fs

    try:
        found = fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True))
    except OSError:
        return []
    return [
        info.path
        for info in found
        if info.type == pyarrow.fs.FileType.Directory and re.fullmatch(r"checkpoint_\d+", info.base_name)
    ]


@dataclass
class Started:
    """A sweep ready to run: its places, and what every trial needs to find its MLflow parent run."""

    places: Places
    tracking: dict[str, str]


def prepare(
    sweep: Sweep,
    args: argparse.Namespace,
    experiment_path: str,
    restore: bool,
    parent: tuple[str, str] | None = None,
) -> Started:
    """Resolve storage/tracking (``places.resolve_places``), check the tracking server, start or join Ray,
    and open the sweep's MLflow parent run: ``parent`` when given (a search's retrain), the one whose ids
    the restored Tune state keeps, else a new one; its ids are kept beside the Tune state."""
    import ray

    places = resolve_places(args.results, args.storage, args.tracking_uri)
    address = args.address or os.environ.get("RAY_ADDRESS")
    check_tracking(places.tracking_uri)
    # Tune hands the driver's AWS_* variables to every trainable as runtime_env env_vars, and Ray's agents
    # log runtime_envs at INFO: keep Ray's own logs at WARNING so credentials never reach them.
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")

    if address:
        ray.init(address=address, ignore_reinit_error=True)
    else:
        ray.init(
            address="local",
            include_dashboard=False,
            ignore_reinit_error=True,
            num_gpus=getattr(args, "local_gpus", None) or None,
            _temp_dir=os.environ.get("LANGDML_RAY_TEMP_DIR"),
        )
    check_trial_cpus(args.cpus_per_trial, local=not address)  # before the parent run: a refusal leaves none
    code = {**git_provenance(), **source_tags(sweep.path)}
    known = parent or (load_mlflow_ids(experiment_path) if restore else None)
    experiment_id, parent_run_id = parent_run(
        places.tracking_uri, sweep.name, {SWEEP_FILE_TAG: str(sweep.path), **code}, known
    )
    store_json(experiment_path, MLFLOW_IDS_FILE, [experiment_id, parent_run_id])
    tracking = {
        **code,
        "uri": places.tracking_uri,
        "experiment_id": experiment_id,
        "parent_run_id": parent_run_id,
        "sweep": sweep.name,
    }
    return Started(places, tracking)


def run_config(name: str, storage_path: str):
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=1,
    )


def resolve_trial(params: dict[str, Any], trials: Trials) -> dict[str, Any]:
    """The trial (name, config, varied) behind a Tune config: a grid point (its name), or a search proposal
    whose sampled values complete the cell's config (``langdml_core.runner.search``)."""
    name = params["trial"]
    trial = {"name": name, **trials[name]}
    if params.get("search"):
        values = dict(params["search"])
        trial = {"name": searched_name(values), "config": {**trial["config"], **values}, "varied": values}
    return trial


def run_sweep(
    sweep: Sweep,
    args: argparse.Namespace,
    tune_name: str | None = None,
    parent: tuple[str, str] | None = None,
) -> int:
    """Run (or with --resume continue) a grid sweep on local embedded Ray or a cluster; write its report.
    (A search sweep runs through ``runner.search.run_search``, which calls this for its retrain.)"""
    from ray import tune

    trials = trials_table(sweep.trials)
    tune_name = tune_name or sweep.name
    experiment_path = resolve_places(args.results, args.storage, args.tracking_uri).tune_path(tune_name)
    restore = claim_state(sweep.name, experiment_path, trials, args.resume)  # before Ray or MLflow start
    if restore:  # --resume is the user's retry (data fixed, space freed): failed trials get one more try
        clear_failure_markers(experiment_path)
    started = prepare(sweep, args, experiment_path, restore, parent)
    resources = {"cpu": args.cpus_per_trial, "gpu": gpus_per_trial(args.gpus_per_trial, sweep.trials)}
    param_space = {"trial": tune.grid_search(execution_order(trials))}  # a restore keeps its own order
    fn = trainable_for(started.tracking, trials, resources)
    if restore:
        tuner = tune.Tuner.restore(
            experiment_path, fn, resume_unfinished=True, resume_errored=True, param_space=param_space
        )
    else:
        tuner = tune.Tuner(
            fn,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=args.max_concurrent or None,
                trial_name_creator=trial_name,
                trial_dirname_creator=dirname,
            ),
            run_config=run_config(tune_name, started.places.storage),
        )
    tracking_uri, parent = started.tracking["uri"], started.tracking["parent_run_id"]
    try:
        results = tuner.fit()  # Tune stops gracefully on a first Ctrl-C and returns what it has
    except KeyboardInterrupt:  # a second Ctrl-C
        end_run(tracking_uri, parent, "KILLED")
        print(f"Interrupted; rerun with --resume to finish the sweep ({sweep.name}).", file=sys.stderr)
        return 130
    except Exception as exc:  # Tune itself failed: the parent run must not stay RUNNING
        end_run(tracking_uri, parent, "FAILED")
        full = full_storage(started.places.storage)
        if full is None:
            raise
        raise DiskFullError(
            f"Tune's storage {full!r} is full (Ray Tune failed writing its state: {type(exc).__name__}); free "
            f"space there and rerun with --resume: finished trials keep their results."
        ) from None
    records = results_frame(results, trials)
    close_open_trial_runs(tracking_uri, parent, records)
    failed = [r for r in records if r.status == ERROR]
    unfinished = missing_trials(sweep, records)
    end_run(tracking_uri, parent, "FAILED" if failed else "KILLED" if unfinished else "FINISHED")
    report_dir = started.places.results / sweep.name
    table = write_report(sweep, records, report_dir, load=embeddings_loader(tracking_uri))
    record_report(tracking_uri, parent, sweep, report_dir, table)
    print(table)
    print(f"\nBrowse the sweep's MLflow record: {ui_command(started.places)}")
    if unfinished:
        print(
            f"Interrupted: {len(unfinished)} of {len(sweep.trials)} trials did not finish "
            f"({', '.join(unfinished[:5])}{', ...' if len(unfinished) > 5 else ''}); rerun with --resume to "
            "finish them.",
            file=sys.stderr,
        )
        return 130
    return 1 if failed else 0


def results_frame(results, trials: Trials) -> list[TrialRecord]:
    """One record per trial from Tune's ResultGrid: name, varied values, status, per-epoch history."""
    records = []
    # a trial's Tune status (TERMINATED, RUNNING, PENDING, ...): ResultGrid keeps its trials in the order of
    # its results, but has no public accessor for their status
    statuses = [t.status for t in results._experiment_analysis.trials]
    for result, tune_status in zip(results, statuses, strict=True):
        trial = resolve_trial(result.config or _params(result), trials)
        history = result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None else []
        records.append(
            TrialRecord(
                name=trial["name"],
                varied=trial["varied"],
                config=trial["config"],
                status=ERROR
                if result.error is not None
                else TERMINATED
                if tune_status == TERMINATED
                else INCOMPLETE,
                error=str(result.error) if result.error else "",
                history=history,
                trial_path=result.path if os.path.isdir(result.path or "") else "",
            )
        )
    return records


def _params(result) -> dict[str, Any]:
    """A trial's Tune config from its params.json: restored from Tune's files, a trial that failed before its
    first report (a NaN at epoch 1) has no result.json, hence no ``result.config``."""
    with result.filesystem.open_input_stream(f"{result.path}/params.json") as stream:
        return json.loads(stream.read())


def dirname(trial) -> str:
    name = trial_name(trial)
    return re.sub(r"[^\w.=-]+", "_", name)[:100] + f"_{trial.trial_id}"


def records_from_tune(experiment_path: str) -> list[TrialRecord]:
    """Per-trial records from Tune's own result files (works while MLflow is unreachable)."""
    from ray import tune

    if not tune.Tuner.can_restore(experiment_path):
        raise ConfigError(f"No Tune results at {experiment_path}; run the sweep first or pass --storage.")
    trials = load_trials(experiment_path)
    if trials is None:
        raise ConfigError(
            f"{experiment_path} has no {TRIALS_FILE} (made by an older langdml); rerun the sweep, or read its "
            "record from MLflow (langdml report --source mlflow)."
        )
    # reading results runs nothing: the trainable only has to carry the same name as the one that ran
    return results_frame(tune.Tuner.restore(experiment_path, trainable).get_results(), trials)
