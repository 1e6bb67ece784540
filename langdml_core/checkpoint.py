"""Per-epoch checkpoints: written atomically, loaded with torch's weights-only loader.

The newest two are kept; when the newest cannot be read (a crash while copying it elsewhere, a full
disk) the previous one is used and a warning says so.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from langdml_core.cache import atomic_write

log = logging.getLogger(__name__)
KEEP = 2
_NAME = re.compile(r"^checkpoint_epoch(\d+)\.pt$")


def save(directory: Path, epoch: int, state: dict[str, Any]) -> Path:
    directory = Path(directory)
    target = atomic_write(directory / f"checkpoint_epoch{epoch:04d}.pt", lambda tmp: torch.save(state, tmp))
    for old in _checkpoints(directory)[KEEP:]:
        old.unlink(missing_ok=True)
    return target


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


def _checkpoints(directory: Path) -> list[Path]:
    """Checkpoints newest first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]
