"""Sweep files -> fully resolved trials (no Ray): loading, validation, trial names, the smoke subset.

A sweep file (``sweeps/*.py``) is config-as-code: ``get_config()`` returns dotted overrides of the trial
defaults, ``get_sweep()`` a flat dict of dotted keys -> lists of values (a grid), and an optional
``derive(trial)`` fills keys that follow from others, and an optional ``keep(trial) -> bool`` drops grid
points (e.g. a no-guidance trial needs no omega grid) (e.g. the paper's recipe per dataset and loss,
``langdml_core.paper.recipe``). Its docstring states ``Trials: N`` (asserted by the tests). Running the file
as a script calls ``langdml_core.runner.cli.sweep_main``.

Precedence, lowest first: ``get_config()``, ``derive(trial)``, the swept values, ``--set`` overrides,
``--smoke``. Every trial records where each of its values came from (``Trial.sources``, printed by
``--list --resolve``): a value that ``get_config``/``derive`` return as ``paper.Sourced(value, source)``
keeps that source; a plain value is sourced to the function that set it; swept, ``--set`` and ``--smoke``
values say so; anything else is a langdml default.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import math
import re
import reprlib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from langdml_core.config import TrialConfig, parse_overrides
from langdml_core.errors import ConfigError
from langdml_core.paper import Sourced
from langdml_core.runner.places import SMOKE_SUFFIX
from langdml_core.runner.search_spec import SMOKE_SEARCH, SearchSpec

SMOKE = {
    "run.epochs": 1,
    "run.max_steps_per_epoch": 2,
    "optim.warmup_steps": 0,  # a cosine schedule's warm-up would outlast the 2 steps
    "optim.batch_size": 16,
    "eval.batch_size": 256,
    "eval.ks": [1, 2],  # the fixture splits of the paper sweeps' smoke runs have a handful of images
    "data.test_images_per_class": 8,  # a smoke run checks that a sweep runs, not its numbers
    "run.progress": False,
}
"""What ``--smoke`` changes in every trial (datasets and models stay those of the sweep). A smoke run keeps
only the trials needed for every value of every swept key to run once (see ``smoke_trials``)."""

MAX_GRID = 10_000
"""Grid points a sweep may span without ``--allow-large-grid``: each becomes a Tune trial and an MLflow run
(and expanding one costs a few ms), so a grid beyond this is more likely a typo than a plan."""

SHORT = {"multisimilarity": "msim", "normalized_softmax": "normsoftmax", "proxy_anchor": "proxyanchor"}
"""Abbreviations used in trial names only."""


@dataclass
class Trial:
    name: str
    config: dict[str, Any]  # flat dotted keys, complete (defaults included)
    varied: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # config key -> where its value came from


@dataclass
class Sweep:
    name: str
    path: Path
    module: ModuleType
    trials: list[Trial]
    declared_trials: int | None
    search: SearchSpec | None = None
    """The ``get_search()`` declaration when the file defines ``get_search()``; then ``trials`` lists
    placeholders for the proposals and the retrain, and ``base_config`` is the tuned cell's config."""
    base_config: dict[str, Any] = field(default_factory=dict)


def load_sweep(
    path: str | Path,
    *,
    overrides: list[str] | None = None,
    seeds: int | None = None,
    smoke: bool = False,
    max_grid: int | None = MAX_GRID,
) -> Sweep:
    """Import a sweep file and expand it into fully resolved, validated trials (a grid above ``max_grid``
    points is refused; None: no cap)."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise ConfigError(f"Sweep file {str(path)!r} does not exist; expected a file such as sweeps/demo.py.")
    module = _import(path)
    for required in ("get_config", "get_sweep"):
        if not hasattr(module, required):
            raise ConfigError(
                f"Sweep file {path.name} has no {required}(); see sweeps/demo.py for the format."
            )
    base, base_sources = _split_sources(
        _returned_dict(module, "get_config", path), f"{path.name} get_config()"
    )
    grid = _returned_dict(module, "get_sweep", path)
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(
                f"{path.name}: get_sweep()[{key!r}] must be a non-empty list of values, got {values!r}."
            )
    extra = parse_overrides(overrides or [])
    if seeds is not None and (not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"--seeds {seeds} must be a positive number of seeds (run.seed 0..N-1).")
    if seeds is not None:
        grid["run.seed"] = list(range(seeds))
    for key in extra:
        grid.pop(key, None)  # an override fixes a swept key
    points = math.prod(len(values) for values in grid.values())
    if max_grid is not None and points > max_grid:
        raise ConfigError(
            f"{path.name}: get_sweep() spans {points:,} grid points, more than {max_grid:,} (each is a Tune "
            "trial and an MLflow run); sweep fewer values, or pass --allow-large-grid if you mean it."
        )
    trials = []
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        varied = dict(zip(keys, combo, strict=True))
        if hasattr(module, "keep") and not _call(module, "keep", path, dict(varied)):
            continue
        derived, derived_sources = {}, {}
        if hasattr(module, "derive"):  # derive sees the swept values and the overrides; both win over it
            derived = _returned_dict(module, "derive", path, {**base, **varied, **extra})
            derived, derived_sources = _split_sources(derived, f"{path.name} derive()")
        smoked = SMOKE if smoke else {}
        # in this order, so that a dotted sub-key (--set loss.kwargs.alpha=3) lands after its whole dict
        flat = {**base, **derived, **varied, **extra, **smoked}
        sources = {
            **base_sources,
            **derived_sources,
            **dict.fromkeys(varied, f"swept in {path.name}"),
            **dict.fromkeys(extra, "--set override"),
            **dict.fromkeys(smoked, "--smoke"),
        }
        name = trial_name(varied)
        try:
            config = TrialConfig.from_dict(copy.deepcopy(flat)).flat()
        except ConfigError as exc:
            raise ConfigError(f"{path.name}, trial {name}: {exc}") from None
        trials.append(Trial(name, config, varied, _complete_sources(sources, config)))
    names = [trial.name for trial in trials]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ConfigError(
            f"{path.name}: two trials are both named {twice!r} (repeated or equal values in get_sweep()); "
            "each swept value must appear once."
        )
    name, declared = getattr(module, "NAME", path.stem), declared_trial_count(module)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        raise ConfigError(
            f"{path.name}: NAME={name!r} must be a non-empty name of letters, digits, '_', '.' or '-' "
            "(it names the MLflow experiment and the results folder)."
        )
    if smoke:
        name += SMOKE_SUFFIX
    if hasattr(module, "get_search"):
        return _search_sweep(name, path, module, trials, declared, smoke)
    if smoke:
        trials = smoke_trials(trials)
    return Sweep(name, path, module, trials, declared)


def _search_sweep(name, path, module, cells: list[Trial], declared, smoke: bool) -> Sweep:
    if len(cells) != 1:
        raise ConfigError(
            f"{path.name} is a search (it defines get_search()) but its grid has {len(cells)} setups; "
            "a search tunes one setup: fix the others with --set KEY=VALUE (e.g. --set data.name=cars196)."
        )
    raw = _returned_dict(module, "get_search", path)
    if smoke:  # the retrain keeps the smoke settings too
        raw.update(SMOKE_SEARCH)
        raw["final"] = {k: v for k, v in raw.get("final", {}).items() if k not in SMOKE}
    spec = SearchSpec.from_dict(raw, path.name)
    base = cells[0].config
    trials = search_trials(spec, base)
    for trial in trials:  # the cell's sources, then what the search changes
        trial.sources = dict(cells[0].sources)
        trial.sources.update(dict.fromkeys(spec.space, f"searched by {path.name} get_search()"))
        if trial.name.startswith("final/"):
            trial.sources.update(dict.fromkeys(spec.final, f"{path.name} get_search()['final']"))
            trial.sources["run.seed"] = f"{path.name} get_search()['final_seeds']"
    return Sweep(name, path, module, trials, declared, search=spec, base_config=base)


def search_trials(spec: SearchSpec, base: dict[str, Any]):
    """The trials a search will run, for listing: placeholders for the proposals, then the retrain."""
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


def _split_sources(values: dict[str, Any], setter: str) -> tuple[dict[str, Any], dict[str, str]]:
    """{key: Sourced(value, source) or plain value} -> ({key: value}, {key: source}); plain ones: setter."""
    plain = {k: v.value if isinstance(v, Sourced) else v for k, v in values.items()}
    return plain, {k: v.source if isinstance(v, Sourced) else setter for k, v in values.items()}


def _complete_sources(sources: dict[str, str], config: dict[str, Any]) -> dict[str, str]:
    """One source per config key; a dotted sub-key (--set loss.kwargs.alpha=3) is added to its key's."""
    done = {key: sources.get(key, "langdml default (langdml_core/config.py)") for key in config}
    for key, source in sources.items():
        parent = next((p for p in config if key.startswith(p + ".")), None)
        if key not in config and parent is not None:
            done[parent] += f" | {key[len(parent) + 1 :]}: {source}"
    return done


def _import(path: Path) -> ModuleType:
    """Execute a sweep file as a module; its syntax or import errors become one sentence with the line."""
    spec = importlib.util.spec_from_file_location(f"langdml_sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except SyntaxError as err:
        raise ConfigError(
            f"Sweep file {path.name} has a syntax error at line {err.lineno}: {err.msg}; "
            f"`python -m py_compile {path}` shows where."
        ) from None
    except Exception as err:  # noqa: BLE001 - the user's code: name the file, line and error in one sentence
        raise _user_code_error(path, "importing it", err) from None
    return module


def _user_code_error(path: Path, doing: str, err: Exception) -> ConfigError:
    lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__) if frame.filename == str(path)]
    where = f" (line {lines[-1]})" if lines else ""
    message = " ".join(str(err).split())
    return ConfigError(f"Sweep file {path.name} failed {doing}{where}: {type(err).__name__}: {message}.")


def _call(module: ModuleType, function: str, path: Path, *args: Any) -> Any:
    fn = getattr(module, function)
    if not callable(fn):
        raise ConfigError(f"{path.name}: {function} must be a function, not {reprlib.repr(fn)}.")
    try:
        return fn(*args)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's code: one sentence, not a traceback
        raise _user_code_error(path, f"in {function}()", err) from None


def _returned_dict(module: ModuleType, function: str, path: Path, *args: Any) -> dict[str, Any]:
    """What a sweep file's function returns: a dict with dotted string keys, or refused in one sentence."""
    result = _call(module, function, path, *args)
    if not isinstance(result, Mapping) or not all(isinstance(key, str) for key in result):
        raise ConfigError(
            f"{path.name}: {function}() must return a dict with dotted string keys (e.g. 'loss.name'), "
            f"got {reprlib.repr(result)}."
        )
    return dict(result)


def smoke_trials(trials: list[Trial]) -> list[Trial]:
    """A few trials that together run every value of every swept key (greedy set cover, sweep order kept):
    table1's 81 trials become 3 (each dataset, loss and guidance mode once)."""
    wanted = {(key, repr(value)) for trial in trials for key, value in trial.varied.items()}
    chosen: list[int] = []
    while wanted:
        gains = [len(wanted & {(k, repr(v)) for k, v in t.varied.items()}) for t in trials]
        best = gains.index(max(gains))  # the first trial that covers the most values still missing
        chosen.append(best)
        wanted -= {(k, repr(v)) for k, v in trials[best].varied.items()}
    return [trials[i] for i in sorted(chosen)] or trials[:1]


def trial_name(varied: dict[str, Any]) -> str:
    """e.g. cub200/msim/plg/omega=7.5/seed=0: categorical names bare, numbers as key=value."""
    parts = []
    for key, value in varied.items():
        short = key.rsplit(".", 1)[-1]
        if isinstance(value, str) and key in (
            "data.name",
            "loss.name",
            "language.guidance",
            "model.backbone",
            "language.encoder",
        ):
            parts.append(SHORT.get(value, value))
        else:
            parts.append(f"{short}={value}")
    return "/".join(parts) or "default"


def declared_trial_count(module: ModuleType) -> int | None:
    match = re.search(r"^\s*Trials:\s*(\d[\d,]*)", module.__doc__ or "", re.MULTILINE)
    return int(match.group(1).replace(",", "")) if match else None
