"""The ``langdml`` command (train, sweep, report, ui, config, data, bench) and ``python sweeps/X.py``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from langdml_core.config import SECTIONS, TrialConfig, field_docs, parse_overrides
from langdml_core.errors import ConfigError, UserError
from langdml_core.runner.places import resolve_places, tune_experiments
from langdml_core.runner.sweep_file import MAX_GRID, Sweep, load_sweep
from langdml_core.runner.tracking_store import redact

TRAIN_EPILOG = """\
Every config key can be set with --set section.key=value (values are parsed as YAML: 2, 1e-5, true,
[1, 2, 4]). Sections: data, model, loss, language, optim, eval, run. `langdml config` lists every key
with its default and meaning. Examples:
  langdml train --set data.name=demo --set run.epochs=2
  langdml train --set data.name=cub200 --set data.root=/data/cub --set model.backbone=resnet50.tv_in1k \\
      --set model.weights_file=/weights/resnet50_tv.safetensors --set loss.name=margin
  langdml train --sweep sweeps/demo.py --trial msim/elg      (replay one trial of a sweep, without Ray)
Outputs in DIR: config.json, metrics.json (final + per-epoch), checkpoints (a rerun with the same DIR resumes).
"""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:  # the sweep runner owns its flags (shared with `python sweeps/X.py`)
        return sweep_main(None, argv[1:])

    parser = argparse.ArgumentParser(prog="langdml", description="Language-guided deep metric learning.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="run one trial locally, without Ray",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and evaluate one trial on this machine.",
    )
    train.add_argument("--config", help="JSON or YAML file with (nested or dotted) config keys")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set loss.name=margin (repeatable)",
    )
    train.add_argument("--out", help="output directory (same as --set run.out_dir=DIR)")
    train.add_argument("--sweep", help="sweep file whose trial to run (with --trial)")
    train.add_argument("--trial", help="trial name from `python SWEEP --list`")
    train.add_argument(
        "--restart",
        action="store_true",
        help="discard the run already in the output directory instead of resuming it",
    )

    sub.add_parser("sweep", help="run a sweep file on Ray Tune (see `langdml sweep --help`)")

    report = sub.add_parser(
        "report", help="rebuild results/<sweep>/ tables from MLflow or Tune's result files"
    )
    report.add_argument("sweep_file")
    report.add_argument("--source", choices=("mlflow", "tune"), default="mlflow")
    report.add_argument("--results", default="results")
    report.add_argument("--tracking-uri", default=None)
    report.add_argument("--storage", default=None)
    report.add_argument("--smoke", action="store_true", help="the sweep's --smoke run (<sweep>-smoke)")
    report.add_argument(
        "--sync-mlflow",
        action="store_true",
        help="first backfill MLflow from Tune's result files (after the tracking server was lost); no duplicates",
    )

    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the sweep database")
    ui.add_argument("--tracking-uri", default=None, help="default: sqlite database under results/")
    ui.add_argument("--results", default="results")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    ui.add_argument("--port", type=int, default=5000)

    data = sub.add_parser("data", help="check a dataset on disk before training on it")
    check = data.add_subparsers(dest="data_command", required=True).add_parser(
        "check", help="load a dataset as a trial would and check that every image file is whole"
    )
    check.add_argument("dataset", help="cub200, cars196, sop, folder or demo")
    check.add_argument("--root", default="", help="dataset root (default: $LANGDML_DATA_ROOT/DATASET)")
    check.add_argument("--layout", default="auto", help="auto, official or folders (as data.layout)")
    check.add_argument("--no-check-counts", action="store_true", help="skip the official count check")
    check.add_argument("--decode", action="store_true", help="decode every image in full (slower)")

    show = sub.add_parser("config", help="print every config key with its default and meaning")
    show.add_argument("--json", action="store_true", help="print the defaults as JSON")

    from langdml_core.bench import add_bench_parser

    add_bench_parser(sub)

    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "report":
            return _report(args)
        if args.command == "ui":
            from langdml_core.runner.ui import serve

            return serve(args)
        if args.command == "data":
            from langdml_core.data import check_command

            print(check_command(args.dataset, args.root, args.layout, not args.no_check_counts, args.decode))
            return 0
        if args.command == "config":
            return _show_config(args.json)
        if hasattr(args, "func"):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume from the last checkpoint.", file=sys.stderr)
        return 130
    except UserError as exc:  # expected mistakes: one sentence; anything else keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `langdml config | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    return 0


def _train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"run.out_dir={args.out}"] if args.out else [])
    if bool(args.sweep) != bool(args.trial):
        raise ConfigError("--sweep and --trial go together: --sweep sweeps/X.py --trial NAME.")
    if args.sweep:
        sweep = load_sweep(args.sweep, max_grid=None)
        by_name = {t.name: t for t in sweep.trials}
        if args.trial not in by_name:
            from langdml_core.registry import suggest

            raise ConfigError(
                f"Trial {args.trial!r} is not in {sweep.name}{suggest(args.trial, list(by_name))}; "
                f"list them with `python {args.sweep} --list`."
            )
        config = TrialConfig.from_dict({**by_name[args.trial].config, **parse_overrides(overrides)})
    else:
        config = TrialConfig.load(args.config, overrides)  # refuse bad keys before the heavy imports
    from langdml_core.train import train_trial

    summary = train_trial(config, restart=args.restart)
    final = {k: v for k, v in summary["final"].items() if "/" in k and not k.startswith("train/")}
    print("final: " + json.dumps(final))
    return 0


def _report(args: argparse.Namespace) -> int:
    from langdml_core.runner.report import write_report
    from langdml_core.runner.state import load_mlflow_ids
    from langdml_core.runner.tracking import records_from_mlflow
    from langdml_core.runner.tracking_store import check_tracking

    sweep = load_sweep(args.sweep_file, smoke=args.smoke, max_grid=None)
    places = resolve_places(args.results, args.storage, args.tracking_uri)
    if args.source == "mlflow" or args.sync_mlflow:  # one sentence now, not minutes of MLflow's HTTP retries
        check_tracking(places.tracking_uri)
    # the sweep run whose Tune state is in this storage (a search's phases share one parent run)
    known = load_mlflow_ids(
        places.tune_path(tune_experiments(sweep.name, search=sweep.search is not None)[0])
    )
    if args.source == "tune" or args.sync_mlflow:
        from langdml_core.runner.tune import records_from_tune

        records = []  # a search keeps its two phases as two Tune experiments
        for experiment in tune_experiments(sweep.name, search=sweep.search is not None):
            records += records_from_tune(places.tune_path(experiment))
    if args.sync_mlflow:
        from langdml_core.runner.tracking import sync_records

        counts = sync_records(places.tracking_uri, sweep, records, known)
        print(
            f"MLflow {redact(places.tracking_uri)}: {counts['runs']} trial runs checked, "
            f"{counts['epochs_sent']} epochs backfilled"
        )
    if args.source == "mlflow":
        records = records_from_mlflow(places.tracking_uri, sweep.name, known[1] if known else None)
    if sweep.search is not None:
        from langdml_core.runner.search import report_search

        records = report_search(sweep, records, places.results / sweep.name)
    from langdml_core.runner.language_effect import embeddings_loader

    text = write_report(
        sweep, records, places.results / sweep.name, load=embeddings_loader(places.tracking_uri)
    )
    if args.source == "mlflow" or args.sync_mlflow:  # MLflow answered: the parent run gets the new report
        from langdml_core.runner.tracking import parent_run_id, record_report

        run_id = known[1] if known else parent_run_id(places.tracking_uri, sweep.name)
        if run_id is not None:
            record_report(places.tracking_uri, run_id, sweep, places.results / sweep.name, text)
    print(text)
    return 0


def _show_config(as_json: bool) -> int:
    defaults = TrialConfig().to_dict()
    if as_json:
        print(json.dumps(defaults, indent=2))
        return 0
    for section, cls in SECTIONS.items():
        print(f"[{section}]")
        docs = field_docs(cls)
        for key, value in defaults[section].items():
            print(f"  {section}.{key} = {value!r}\n      {docs.get(key, '')}")
    return 0


# ---- langdml sweep / python sweeps/X.py ----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny run: 1 epoch, 2 steps, batch 16, 8 test images per class, the few trials that cover every swept value",
    )
    parser.add_argument("--list", action="store_true", help="print trial names and count; run nothing")
    parser.add_argument(
        "--allow-large-grid",
        action="store_true",
        help=f"run a grid of more than {MAX_GRID:,} points (refused without it, as a likely typo)",
    )
    parser.add_argument(
        "--resolve",
        action="store_true",
        help="with --list: print every trial's full config and the source of each value",
    )
    parser.add_argument(
        "--storage", default=None, help="Tune storage path (default: results/ray; env LANGDML_STORAGE)"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow URI (default: sqlite under results/; env MLFLOW_TRACKING_URI)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="Ray address: omitted = local embedded Ray; 'auto' = a running cluster (env RAY_ADDRESS)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted sweep from its Tune state"
    )
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        default=float(os.environ["LANGDML_GPUS_PER_TRIAL"])
        if os.environ.get("LANGDML_GPUS_PER_TRIAL")
        else None,
        help="GPUs per trial (fractional allowed; env LANGDML_GPUS_PER_TRIAL, set on cluster nodes); "
        "default: 1 when the Ray cluster has GPUs, else 0",
    )
    parser.add_argument(
        "--cpus-per-trial",
        type=positive_float,
        default=os.environ.get("LANGDML_CPUS_PER_TRIAL") or "1",  # a string: argparse checks it with type
        help="CPUs per trial (also torch threads; env LANGDML_CPUS_PER_TRIAL)",
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=0, help="cap on concurrent trials (0 = as resources allow)"
    )
    parser.add_argument(
        "--local-gpus",
        type=int,
        default=0,
        help="logical GPUs the embedded local Ray advertises (testing GPU packing on a CPU box)",
    )
    parser.add_argument("--seeds", type=int, default=None, help="override the sweep's seeds with 0..N-1")
    parser.add_argument(
        "--results", default="results", help="directory for tables, parquet and the MLflow database"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in every trial",
    )


def positive_float(text: str) -> float:
    """argparse type of a resource share: a number > 0 (argparse prints the sentence and exits 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected a share > 0, e.g. 1") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0 (each trial needs a share of a CPU), e.g. 1")
    return value


def sweep_main(path: str | Path | None = None, argv: list[str] | None = None) -> int:
    """Entry point of ``python sweeps/X.py [flags]`` and ``langdml sweep sweeps/X.py [flags]``."""
    parser = argparse.ArgumentParser(prog=f"python {Path(path).name}" if path else "langdml sweep")
    if path is None:
        parser.add_argument("sweep_file")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(
            path or args.sweep_file,
            overrides=args.overrides,
            seeds=args.seeds,
            smoke=args.smoke,
            max_grid=None if args.allow_large_grid else MAX_GRID,
        )
        if args.list:
            print_list(sweep, resolve=args.resolve)
            return 0
        if sweep.search is not None:
            from langdml_core.runner.search import run_search

            return run_search(sweep, args)
        from langdml_core.runner.tune import run_sweep

        return run_sweep(sweep, args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def print_list(sweep: Sweep, resolve: bool = False) -> None:
    for trial in sweep.trials:
        print(
            trial.name
            if not resolve
            else json.dumps(
                {"name": trial.name, "config": trial.config, "sources": trial.sources}, sort_keys=True
            )
        )
    print(
        f"{len(sweep.trials)} trials in {sweep.name}"
        + (f" (declared: {sweep.declared_trials})" if sweep.declared_trials is not None else "")
    )


if __name__ == "__main__":
    sys.exit(main())
