"""One training run per output directory: a lock, and no silent resume of a different configuration.

``langdml train --out DIR`` resumes the run in DIR from its newest checkpoint. That is only right when DIR
holds the same experiment: a changed learning rate, seed or loss would otherwise continue the old run while
config.json records the new values. So resuming compares the stored config with the new one and refuses any
difference outside ``RESUMABLE`` in one sentence; ``restart=True`` (``langdml train --restart``) discards the
old run instead. ``run.epochs`` may grow (train longer), never shrink below what was already trained. A lock
file keeps a second process out of a directory in use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from langdml_core import checkpoint
from langdml_core.config import TrialConfig
from langdml_core.errors import RunDirectoryError

RESUMABLE = {
    "run.out_dir",
    "run.threads",
    "run.progress",
    "run.device",
    "data.root",
    "data.num_workers",
    "eval.batch_size",
}
"""Keys that may change between a run and its resumption: where and how fast, not what is trained."""
CONFIG, LOCK = "config.json", ".langdml.lock"


@contextmanager
def claim(out_dir: Path, config: TrialConfig, restart: bool = False) -> Iterator[None]:
    """Hold ``out_dir`` for one run of ``config``: refuse a busy directory or a different stored run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunDirectoryError(
            f"{out_dir} is in use by another langdml process (lock {out_dir / LOCK}); wait for it to end "
            "or give another output directory."
        ) from None
    try:
        checkpoint.remove_orphans(out_dir)
        if restart:
            discard(out_dir)
        else:
            check_same_run(out_dir, config)
        text = json.dumps(config.to_dict(), indent=2)
        stored = out_dir / CONFIG
        if not stored.is_file() or stored.read_text() != text:  # a resumed, finished run changes no file
            stored.write_text(text)
        yield
    finally:
        lock.release()


def check_same_run(out_dir: Path, config: TrialConfig) -> None:
    """Refuse to resume a stored run whose configuration differs from ``config``."""
    epoch = checkpoint.latest_epoch(out_dir)
    stored_file = out_dir / CONFIG
    if epoch is None or not stored_file.is_file():
        return  # nothing to resume
    stored = TrialConfig.from_dict(json.loads(stored_file.read_text())).flat()
    new = config.flat()
    changed = [k for k in sorted(set(stored) | set(new)) if k not in RESUMABLE and k != "run.epochs"]
    changed = [k for k in changed if stored.get(k) != new.get(k)]
    if changed:
        shown = "; ".join(f"{k}: {_short(stored.get(k))} -> {_short(new.get(k))}" for k in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise RunDirectoryError(
            f"{out_dir} holds a run (epoch {epoch}) with a different configuration ({shown}{more}); give "
            "another output directory, or restart to discard that run (langdml train --restart)."
        )
    if config.run.epochs < epoch:
        raise RunDirectoryError(
            f"{out_dir} has already trained {epoch} epochs, more than run.epochs={config.run.epochs}; give "
            "another output directory, or restart to discard that run (langdml train --restart)."
        )


def discard(out_dir: Path) -> None:
    """Remove a previous run's checkpoints and metrics (other files stay)."""
    for path in checkpoint.all_checkpoints(out_dir):
        path.unlink(missing_ok=True)
    (out_dir / "metrics.json").unlink(missing_ok=True)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
