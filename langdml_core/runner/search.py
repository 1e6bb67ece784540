"""Search sweeps: Optuna (TPE) proposes values on a class-disjoint validation split, ASHA stops weak trials
early, then the best setting is retrained over seeds on all training classes.

A sweep file becomes a search by defining ``get_search()`` (see sweeps/tune_omega.py and
``langdml_core.runner.search_spec``). Its ``get_sweep()`` grid must hold exactly one setup (the cell being
tuned). Repeating trials over seeds (Tune's Repeater) is NOT combined with ASHA: a scheduler would stop
repeats of one setting independently and the averaged score would be wrong; seeds are spent on the retrain
instead.

Ray is imported inside ``run_search`` so reporting a search needs no Ray.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from langdml_core.config import TrialConfig
from langdml_core.errors import ConfigError
from langdml_core.runner.places import FINAL_SUFFIX, SEARCH_SUFFIX, resolve_places
from langdml_core.runner.plots import search_plot
from langdml_core.runner.records import TrialRecord
from langdml_core.runner.resources import gpus_per_trial
from langdml_core.runner.search_spec import SearchSpec
from langdml_core.runner.state import claim_state, trials_table
from langdml_core.runner.sweep_file import Sweep, Trial
from langdml_core.runner.tracking import close_open_trial_runs
from langdml_core.runner.tune import (
    dirname,
    prepare,
    results_frame,
    run_config,
    run_sweep,
    trainable_for,
    trial_name,
)


def best_setting(records: list[TrialRecord], spec: SearchSpec, epochs: int) -> dict[str, Any]:
    """The proposal with the best last-epoch metric among those ASHA let train the whole schedule."""
    complete = [
        r
        for r in records
        if r.history
        and int(r.history[-1].get("epoch", 0)) >= epochs
        and _finite(r.history[-1].get(spec.metric))
    ]
    if not complete:
        raise ConfigError(
            f"No search trial reached epoch {epochs} with a finite {spec.metric}; see the trials' errors."
        )
    sign = 1 if spec.mode == "max" else -1
    # ties go to the first name in sort order, so Tune's and MLflow's records choose the same proposal
    best = min(complete, key=lambda r: (-sign * float(r.history[-1][spec.metric]), r.name))
    return {
        "values": {k: best.config[k] for k in spec.space},
        "trial": best.name,
        spec.metric: float(best.history[-1][spec.metric]),
        "complete_trials": len(complete),
        "trials": len(records),
    }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---- running -------------------------------------------------------------------------------------------
def run_search(sweep, args: argparse.Namespace) -> int:
    """Phase 1: TPE + ASHA on the validation split; phase 2: retrain the best setting over seeds."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    spec: SearchSpec = sweep.search
    base = sweep.base_config
    epochs = int(base["run.epochs"])
    if int(base.get("data.val_classes", 0)) <= 0 and spec.metric.startswith("val/"):
        raise ConfigError(
            f"{sweep.path.name}: the search scores {spec.metric} but data.val_classes is "
            f"{base.get('data.val_classes')}; set data.val_classes > 0 (a class-disjoint validation split)."
        )
    space = {key: getattr(tune, dist[0])(dist[1], dist[2]) for key, dist in spec.space.items()}
    trials = trials_table([Trial("search", base, {})])
    param_space = {"trial": "search", "search": space}
    path = resolve_places(args.results, args.storage, args.tracking_uri).tune_path(sweep.name + SEARCH_SUFFIX)
    restore = claim_state(sweep.name, path, trials, args.resume)  # before Ray or MLflow start
    started = prepare(sweep, args, path, restore)
    gpus = gpus_per_trial(args.gpus_per_trial, [Trial("search", base, {})])
    args.gpus_per_trial = gpus  # the retrain reserves the same
    fn = trainable_for(started.tracking, trials, {"cpu": args.cpus_per_trial, "gpu": gpus})
    if restore:
        tuner = tune.Tuner.restore(path, fn, resume_unfinished=True, resume_errored=True)
    else:
        searcher = OptunaSearch(metric=spec.metric, mode=spec.mode, seed=spec.seed)
        tuner = tune.Tuner(
            fn,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=args.max_concurrent or 2),
                scheduler=ASHAScheduler(
                    time_attr="epoch",
                    metric=spec.metric,
                    mode=spec.mode,
                    max_t=epochs,
                    grace_period=min(spec.grace_period, epochs),
                    reduction_factor=spec.reduction_factor,
                ),
                num_samples=spec.samples,
                trial_name_creator=trial_name,
                trial_dirname_creator=dirname,
            ),
            run_config=run_config(sweep.name + SEARCH_SUFFIX, started.places.storage),
        )
    records = results_frame(tuner.fit(), trials)
    close_open_trial_runs(started.tracking["uri"], started.tracking["parent_run_id"], records)  # ASHA's stops
    best = best_setting(records, spec, epochs)
    out = started.places.results / sweep.name
    write_search_report(sweep, spec, records, best, out)
    print(f"Best {spec.metric} {best[spec.metric]:.4f}: {best['values']} ({best['trial']})")

    final = TrialConfig.from_dict({**base, **spec.final, **best["values"]}).flat()
    trials = [
        Trial(f"final/seed={s}", {**final, "run.seed": s}, {**best["values"], "run.seed": s})
        for s in spec.final_seeds
    ]
    retrain = Sweep(sweep.name, sweep.path, sweep.module, trials, len(trials))
    parent = (started.tracking["experiment_id"], started.tracking["parent_run_id"])
    return run_sweep(retrain, args, tune_name=sweep.name + FINAL_SUFFIX, parent=parent)


def report_search(sweep, records: list[TrialRecord], out: Path) -> list[TrialRecord]:
    """Rewrite the search report from all records of a search sweep; return the retrain's records."""
    proposals = [r for r in records if r.name.startswith("search/")]
    # the schedule the proposals actually ran (a --smoke or --set run may differ from the file's)
    epochs = max((int(r.config.get("run.epochs", 0)) for r in proposals), default=0)
    best = best_setting(proposals, sweep.search, epochs or int(sweep.base_config["run.epochs"]))
    write_search_report(sweep, sweep.search, proposals, best, out)
    return [r for r in records if r.name.startswith("final/")]


def write_search_report(
    sweep, spec: SearchSpec, records: list[TrialRecord], best: dict[str, Any], out: Path
) -> None:
    """search.parquet (one row per proposal), best.json and a plot of the metric over the searched values."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in records:
        last = r.history[-1] if r.history else {}
        rows.append(
            {
                "trial": r.name,
                "status": r.status,
                **{k: r.config[k] for k in spec.space},
                "epochs": int(last.get("epoch", 0)),
                spec.metric: last.get(spec.metric, float("nan")),
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_parquet(out / "search.parquet", index=False)
    (out / "best.json").write_text(json.dumps(best, indent=2) + "\n")
    search_plot(frame, list(spec.space), spec.metric, out / "search.png")
