"""One trial's outcome, typed: built from Tune's result files (``tune.results_frame``) or from the sweep's
MLflow runs (``tracking.records_from_mlflow``), read by the report, the search and the MLflow backfill.

The tags that identify a trial's MLflow run are written by :func:`trial_tags` only, and read back with
:data:`RESERVED_TAGS` set aside: every other ``langdml.*`` tag is a swept value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langdml_core.config import parse_value

PREFIX = "langdml."
SWEEP_TAG = "langdml.sweep"
TRIAL_TAG = "langdml.trial"
ROLE_TAG = "langdml.role"
"""'parent' on a sweep's parent run."""
ERROR_TAG = "langdml.error"
"""Why a trial failed deterministically (a non-finite loss)."""
GPU_IDS_TAG, NODE_ID_TAG = "langdml.gpu_ids", "langdml.node_id"
"""Where the trial ran (set by the trainable)."""
PLACEMENT_TAGS = (GPU_IDS_TAG, NODE_ID_TAG)
SWEEP_FILE_TAG = "langdml.sweep_file"
MODEL_URI_TAG = "langdml.model_uri"
"""The trial's logged embedding network (runner/logged_model.py)."""
RESERVED_TAGS = frozenset(
    {SWEEP_TAG, TRIAL_TAG, ROLE_TAG, ERROR_TAG, SWEEP_FILE_TAG, MODEL_URI_TAG, *PLACEMENT_TAGS}
)
"""langdml tags that are not swept values."""
EVAL_TAG_PREFIX = "eval."
"""Tags ``eval.test/knn_k``, ``eval.test/nmi_seed``, ...: how a trial's metrics were computed."""
TERMINATED, ERROR, INCOMPLETE = "TERMINATED", "ERROR", "INCOMPLETE"
"""A record's status: finished, failed, or not finished (interrupted or never started: ``--resume``)."""


@dataclass
class TrialRecord:
    name: str
    """The trial's name (``cub200/msim/plg/seed=0``; ``search/...`` and ``final/...`` in a search)."""
    varied: dict[str, Any] = field(default_factory=dict)
    """The swept values that name it (dotted config keys)."""
    config: dict[str, Any] = field(default_factory=dict)
    """Its full flat config."""
    status: str = TERMINATED
    """TERMINATED (finished), ERROR (failed) or INCOMPLETE (interrupted or never started)."""
    error: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One row per epoch: ``epoch`` and the metrics (``test/recall_at_1``, ...)."""
    run_id: str = ""
    """The MLflow run it was read from (empty when read from Tune's files)."""
    trial_path: str = ""
    """Its Tune trial folder when read from Tune's files on local storage (empty otherwise)."""

    @property
    def finished(self) -> bool:
        return self.status == TERMINATED


def trial_tags(sweep: str, varied: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a trial's MLflow run besides its name and parent: its sweep and swept values."""
    return {SWEEP_TAG: sweep, **{PREFIX + key: str(value) for key, value in varied.items()}}


def varied_from_tags(tags: Mapping[str, str]) -> dict[str, Any]:
    """The swept values written by :func:`trial_tags`, parsed back."""
    return {
        key.removeprefix(PREFIX): parse_value(value)
        for key, value in tags.items()
        if key.startswith(PREFIX) and key not in RESERVED_TAGS
    }
