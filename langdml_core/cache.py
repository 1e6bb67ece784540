"""On-disk cache for expensive frozen work (converted weights, generated data, language tables).

Everything is computed once per key, written atomically (temp file + rename) and guarded by a file
lock, so concurrent trials of a sweep on one node share one copy and never read a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


def cache_dir(*parts: str) -> Path:
    """``$LANGDML_CACHE`` (default ``~/.cache/langdml``) joined with parts, created if needed."""
    root = Path(os.environ.get("LANGDML_CACHE") or Path.home() / ".cache" / "langdml").expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def hf_hub_cache() -> str:
    """The Hugging Face hub cache directory, read at call time (HF_HUB_CACHE, then HF_HOME/hub, then the
    default): where Hub models are looked up offline."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


@contextmanager
def locked(target: Path, timeout: float = 1800) -> Iterator[None]:
    """Hold an inter-process lock for producing ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=timeout):
        yield


def atomic_write(target: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file onto ``target`` (atomic on POSIX)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def files_digest(path: str | Path, label: str = "") -> str:
    """sha256 over file names, sizes and a sample of each file's bytes: its first and last MiB and 32 evenly
    spaced 64 KiB blocks between them (about 4 MiB read per file, however big the checkpoint; weights trained
    further differ in every block).

    ``path`` is a file or a directory (all files below it, hidden folders skipped, symlinks followed).
    """
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
    else:
        files = [root]
    h = hashlib.sha256(label.encode())
    for file in files:
        name = file.relative_to(root).as_posix() if root.is_dir() else file.name
        size = file.stat().st_size
        h.update(f"\n{name}:{size}:{_sampled_sha256(file, size)}".encode())
    return h.hexdigest()


def _sampled_sha256(
    file: Path, size: int, edge: int = 1 << 20, blocks: int = 32, block: int = 1 << 16
) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        if size <= 2 * edge + blocks * block:
            h.update(f.read())
            return h.hexdigest()
        offsets = [0] + [edge + i * (size - 2 * edge - block) // (blocks - 1) for i in range(blocks)]
        for offset, length in zip([*offsets, size - edge], [edge] + [block] * blocks + [edge], strict=True):
            f.seek(offset)
            h.update(f.read(length))
    return h.hexdigest()
