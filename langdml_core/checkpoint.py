"""Per-epoch checkpoints: written atomically, loaded with torch's weights-only loader.

The newest two are kept; when the newest cannot be read (a crash while copying it elsewhere, a full
disk) the previous one is used and a warning says so.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from langdml_core.cache import atomic_write
from langdml_core.errors import DiskFullError

log = logging.getLogger(__name__)
KEEP = 2
_NAME = re.compile(r"^checkpoint_epoch(\d+)\.pt$")


def evaluated_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The network weights a checkpoint's trial evaluated: the moving average when it kept one (optim.ema),
    else the last iterate."""
    return state["ema"] if "ema" in state else state["model"]


def save(directory: Path, epoch: int, state: dict[str, Any]) -> Path:
    directory = Path(directory)
    target = directory / f"checkpoint_epoch{epoch:04d}.pt"
    try:
        atomic_write(target, lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError from its zip writer
        if getattr(exc, "errno", None) != errno.ENOSPC and not _disk_full(directory):
            raise
        raise DiskFullError(
            f"No space left on the device of {directory} while writing {target.name}; free space there (or "
            f"use another output directory) and rerun: the run resumes from its last complete checkpoint."
        ) from exc
    for old in _checkpoints(directory)[KEEP:]:
        old.unlink(missing_ok=True)
    return target


def remove_orphans(directory: Path) -> list[Path]:
    """Delete temp files a killed checkpoint write left behind (call while holding the directory's lock)."""
    orphans = list(Path(directory).glob(".checkpoint_epoch*.pt.*.tmp"))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def _disk_full(directory: Path, needed: int = 1 << 20) -> bool:
    """Less than ``needed`` bytes free where ``directory`` lives."""
    try:
        return shutil.disk_usage(directory).free < needed
    except OSError:
        return False


def load_latest(directory: Path | None) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``directory``, or None when there is none."""
    if directory is None or not Path(directory).is_dir():
        return None
    for path in _checkpoints(Path(directory)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated zip, unpickling error: fall back to the previous one
            log.warning("Checkpoint %s is unreadable (%s); falling back to the previous one.", path, exc)
    return None


def newest(state: dict[str, Any] | None, directory: Path | None) -> dict[str, Any] | None:
    """The later of ``state`` (Tune's checkpoint) and the newest checkpoint in ``directory``: a driver killed
    between a trial's epoch and Tune recording it leaves Tune's checkpoint an epoch behind the trial's own."""
    local = latest_epoch(directory) if directory is not None else None
    if state is not None and (local is None or int(state["epoch"]) >= local):
        return state
    return load_latest(directory) or state


def latest_epoch(directory: Path) -> int | None:
    """The epoch of the newest checkpoint file in ``directory`` (None when there is none)."""
    found = all_checkpoints(directory)
    return int(_NAME.match(found[0].name).group(1)) if found else None


def all_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files newest first (an empty list for a missing directory)."""
    return _checkpoints(Path(directory)) if Path(directory).is_dir() else []


def _checkpoints(directory: Path) -> list[Path]:
    """Checkpoints newest first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]
