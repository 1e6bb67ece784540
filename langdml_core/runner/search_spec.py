"""What a search sweep declares (its ``get_search()``), checked, and how its proposals are named; no Ray.

A sweep file becomes a search by defining ``get_search()`` (see sweeps/tune_omega.py); running it is
``langdml_core.runner.search``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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


def searched_name(values: dict[str, Any]) -> str:
    """e.g. search/omega=3.142/temperature=0.8713 (four significant digits identify a proposal)."""
    return "search/" + "/".join(f"{k.rsplit('.', 1)[-1]}={v:.4g}" for k, v in values.items())
