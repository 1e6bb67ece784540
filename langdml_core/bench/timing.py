"""The timing helper every benchmark shares: interleaved repeats, medians and spreads.

Benchmarks print ratios measured in one run (architecture: "not timed tests"); interleaving the modes round
by round makes machine noise (other jobs, thermal state) hit every mode alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def interleaved(measure: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each mode's measurement ``repeats`` times, modes interleaved round by round so that machine noise (other
    jobs, thermal state) hits every mode alike; benches report the median and the [min, max] spread."""
    values: dict[str, list[float]] = {mode: [] for mode in measure}
    for _ in range(repeats):
        for mode, fn in measure.items():
            values[mode].append(fn())
    return values


def summary(values: list[float]) -> dict[str, Any]:
    """Median, min, max and every run of one measurement."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def medians(values: dict[str, list[float]]) -> dict[str, float]:
    return {mode: statistics.median(v) for mode, v in values.items()}


def spreads(values: dict[str, list[float]]) -> dict[str, list[float]]:
    """[min, max] of each mode."""
    return {mode: [min(v), max(v)] for mode, v in values.items()}


def step_header(setup: dict[str, Any]) -> str:
    """The first line of a training-step bench's report: what was timed and how."""
    s = setup
    return (
        f"training step, {s['backbone']} {s['image_size']} px, batch {s['batch_size']}, {s['device']}, "
        f"{s['threads']} threads; median of {s['repeats']} interleaved rounds of {s['steps']} steps"
    )
