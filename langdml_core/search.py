"""Search sweeps: Optuna (TPE) proposes values on a class-disjoint validation split, ASHA stops weak trials
early, then the best setting is retrained over seeds on all training classes.

A sweep file becomes a search by defining ``get_search()`` (see sweeps/tune_omega.py). Its ``get_sweep()``
grid must hold exactly one setup (the cell being tuned). Repeating trials over seeds (Tune's Repeater) is
NOT combined with ASHA: a scheduler would stop repeats of one setting independently and the averaged
score would be wrong; seeds are spent on the retrain instead.

Everything Ray-specific is imported inside ``run_search`` so listing a search sweep needs no Ray.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from langdml_core.config import TrialConfig
from langdml_core.errors import ConfigError

DISTRIBUTIONS = ("loguniform", "uniform")
SMOKE_SEARCH = {"samples": 2, "final_seeds": [0], "grace_period": 1}
"""What ``--smoke`` changes in a search (besides the per-trial SMOKE settings)."""


@dataclass
class SearchSpec:
    space: dict[str, list]
    """Dotted config key -> [distribution, low, high]; distribution is 'loguniform' or 'uniform'."""
    metric: str = "val/recall_at_1"
    """Validation metric the search maximises or minimises (needs data.val_classes > 0)."""
    mode: str = "max"
    samples: int = 24
    """Settings TPE proposes."""
    grace_period: int = 5
    """ASHA: epochs every setting trains before it can be stopped."""
    reduction_factor: int = 3
    """ASHA: keep the best 1/reduction_factor at each rung."""
    seed: int = 0
    """Seed of the TPE sampler (the search's proposals are reproducible)."""
    final: dict[str, Any] = field(default_factory=dict)
    """Overrides for the retrain of the best setting (e.g. all training classes, the full schedule)."""
    final_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> SearchSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown get_search() key {unknown[0]!r}; expected one of {', '.join(sorted(known))}."
            )
        spec = cls(**raw)
        for key, dist in spec.space.items():
            TrialConfig.from_dict({key: 1.0})  # the key must be a real config key
            ok = (
                isinstance(dist, (list, tuple))
                and len(dist) == 3
                and dist[0] in DISTRIBUTIONS
                and all(isinstance(v, (int, float)) for v in dist[1:])
                and 0 < dist[1] < dist[2]
            )
            if not ok:
                raise ConfigError(
                    f"{source}: search space {key}={dist!r}; expected [distribution, low, high] with "
                    f"distribution one of {', '.join(DISTRIBUTIONS)} and 0 < low < high."
                )
        if spec.mode not in ("max", "min"):
            raise ConfigError(f"{source}: search mode {spec.mode!r}; expected 'max' or 'min'.")
        try:
            TrialConfig.from_dict(dict(spec.final))
        except ConfigError as exc:
            raise ConfigError(f"{source}: get_search()['final']: {exc}") from None
        return spec


def search_trials(spec: SearchSpec, base: dict[str, Any]):
    """The trials a search will run, for listing: placeholders for the proposals, then the retrain."""
    from langdml_core.sweep import Trial

    searched = {key: f"<{dist[0]} {dist[1]}..{dist[2]}>" for key, dist in spec.space.items()}
    trials = [
        Trial(f"search/sample={i}", {**base, **searched}, {"sample": i}) for i in range(1, spec.samples + 1)
    ]
    final = TrialConfig.from_dict({**base, **spec.final}).flat()
    trials += [
        Trial(f"final/seed={s}", {**final, **searched, "run.seed": s}, {"run.seed": s})
        for s in spec.final_seeds
    ]
    return trials


def searched_name(values: dict[str, Any]) -> str:
    """e.g. search/omega=3.142/temperature=0.8713 (four significant digits identify a proposal)."""
    return "search/" + "/".join(f"{k.rsplit('.', 1)[-1]}={v:.4g}" for k, v in values.items())


def best_setting(records: list[dict[str, Any]], spec: SearchSpec, epochs: int) -> dict[str, Any]:
    """The proposal with the best last-epoch metric among those ASHA let train the whole schedule."""
    complete = [
        r
        for r in records
        if r["history"]
        and int(r["history"][-1].get("epoch", 0)) >= epochs
        and _finite(r["history"][-1].get(spec.metric))
    ]
    if not complete:
        raise ConfigError(
            f"No search trial reached epoch {epochs} with a finite {spec.metric}; see the trials' errors."
        )
    sign = 1 if spec.mode == "max" else -1
    # ties go to the first name in sort order, so Tune's and MLflow's records choose the same proposal
    best = min(complete, key=lambda r: (-sign * float(r["history"][-1][spec.metric]), r["name"]))
    return {
        "values": {k: best["config"][k] for k in spec.space},
        "trial": best["name"],
        spec.metric: float(best["history"][-1][spec.metric]),
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

    from langdml_core import ray_tune
    from langdml_core.sweep import Sweep, Trial

    spec: SearchSpec = sweep.search
    place = ray_tune.prepare(sweep, args)
    base = sweep.base_config
    epochs = int(base["run.epochs"])
    if int(base.get("data.val_classes", 0)) <= 0 and spec.metric.startswith("val/"):
        raise ConfigError(
            f"{sweep.path.name}: the search scores {spec.metric} but data.val_classes is "
            f"{base.get('data.val_classes')}; set data.val_classes > 0 (a class-disjoint validation split)."
        )
    space = {key: getattr(tune, dist[0])(dist[1], dist[2]) for key, dist in spec.space.items()}
    param_space = {
        "trial": {"name": "search", "config": base, "varied": {}},
        "search": space,
        "tracking": place.tracking,
    }
    path = f"{place.storage}/{sweep.name}-search"
    fn = tune.with_resources(ray_tune.trainable, {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial})
    if args.resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, fn, resume_unfinished=True, resume_errored=True)
    else:
        ray_tune.refuse_overwrite(sweep.name, path, args.resume)
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
                trial_dirname_creator=ray_tune.dirname,
            ),
            run_config=ray_tune.run_config(f"{sweep.name}-search", place.storage),
        )
    records = ray_tune.results_frame(tuner.fit())
    best = best_setting(records, spec, epochs)
    out = Path(args.results).expanduser().absolute() / sweep.name
    write_search_report(sweep, spec, records, best, out)
    print(f"Best {spec.metric} {best[spec.metric]:.4f}: {best['values']} ({best['trial']})")

    final = TrialConfig.from_dict({**base, **spec.final, **best["values"]}).flat()
    trials = [
        Trial(f"final/seed={s}", {**final, "run.seed": s}, {**best["values"], "run.seed": s})
        for s in spec.final_seeds
    ]
    retrain = Sweep(sweep.name, sweep.path, sweep.module, trials, len(trials))
    return ray_tune.run_sweep(retrain, args, tune_name=f"{sweep.name}-final")


def report_search(sweep, records: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Rewrite the search report from all records of a search sweep; return the retrain's records."""
    proposals = [r for r in records if r["name"].startswith("search/")]
    # the schedule the proposals actually ran (a --smoke or --set run may differ from the file's)
    epochs = max((int(r["config"].get("run.epochs", 0)) for r in proposals), default=0)
    best = best_setting(proposals, sweep.search, epochs or int(sweep.base_config["run.epochs"]))
    write_search_report(sweep, sweep.search, proposals, best, out)
    return [r for r in records if r["name"].startswith("final/")]


def write_search_report(sweep, spec: SearchSpec, records, best: dict[str, Any], out: Path) -> None:
    """search.parquet (one row per proposal), best.json and a plot of the metric over the searched values."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in records:
        last = r["history"][-1] if r["history"] else {}
        rows.append(
            {
                "trial": r["name"],
                "status": r["status"],
                **{k: r["config"][k] for k in spec.space},
                "epochs": int(last.get("epoch", 0)),
                spec.metric: last.get(spec.metric, float("nan")),
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_parquet(out / "search.parquet", index=False)
    (out / "best.json").write_text(json.dumps(best, indent=2) + "\n")
    from langdml_core.plots import search_plot

    search_plot(frame, list(spec.space), spec.metric, out / "search.png")
