"""Checks that every image file of a dataset can be read, before any training time is spent on it.

Two depths:

- ``quick`` (every trial start): each file is opened and its first and last bytes are read. A JPEG must
  start with SOI and end with EOI, a PNG start with its signature and end with the IEND chunk, a BMP or WebP
  be at least as long as its header says. This catches empty, unreadable and truncated files (a cut-off
  download) at the cost of two small reads per file; a file that fails it (or has an unknown format, or
  bytes after the JPEG end marker) is decoded in full before it is called broken, so valid files are never
  refused. Pillow then reads each header (no pixels): an image beyond its decompression-bomb limit or with a
  zero side is refused here rather than mid-epoch. What only a full decode finds (a "hollow" file whose
  first and last bytes are right) is named by the loader when a batch meets it (``ImageSet.load``).
- ``decode`` (``langdml data check --decode``): every image is fully decoded with Pillow, as training
  would do.
"""

from __future__ import annotations

import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from langdml_core.data.base import DatasetError, DMLDataset, ImageSet

CHUNK = 512
"""Files per task of the thread pool (threads hide file-system latency; a chunk keeps per-task overhead low)."""


@dataclass
class Problem:
    split: str
    path: str
    what: str  # completes "<path> ...", e.g. "is empty (0 bytes)"


def quick_problem(path: str) -> str | None:
    """What is wrong with one image file by a look at its first and last bytes (None: looks whole)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(32)
            handle.seek(max(0, size - 12))
            tail = handle.read(12)
    except OSError as err:
        return f"cannot be read ({err.strerror or type(err).__name__})"
    if size == 0:
        return "is empty (0 bytes)"
    if not _looks_whole(head, tail, size):
        return decode_problem(path)  # suspicious or unknown format: only a full decode can tell
    return header_problem(path)


def header_problem(path: str) -> str | None:
    """What Pillow refuses by the header alone (no decode, ~40 us): an image too large to decode (Pillow's
    decompression-bomb limit, which would otherwise stop a trial mid-epoch) or with zero width or height."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError as err:
        return f"is too large to decode ({_one_line(err)})"
    except Exception as err:  # noqa: BLE001 - whole by its bytes, yet Pillow cannot read the header
        return f"cannot be decoded as an image ({_one_line(err)})"
    return "has zero width or height" if 0 in (width, height) else None


def _looks_whole(head: bytes, tail: bytes, size: int) -> bool:
    if head.startswith(b"\xff\xd8\xff"):  # JPEG: SOI ... EOI
        return tail.endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):  # PNG: signature ... IEND chunk with its CRC
        return tail.endswith(b"IEND\xaeB`\x82")
    if head.startswith(b"BM") and len(head) >= 6:  # BMP: the header states the file size
        return 0 < struct.unpack("<I", head[2:6])[0] <= size
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":  # WebP: the RIFF size covers the rest
        return struct.unpack("<I", head[4:8])[0] + 8 <= size
    return False


def decode_problem(path: str) -> str | None:
    """What is wrong with one image file when Pillow decodes it in full (None: it decodes)."""
    try:
        with Image.open(path) as image:
            image.verify()  # structure and checksums (PNG CRCs); verify() leaves the image unusable
        with Image.open(path) as image:
            image.load()  # the pixels: a truncated JPEG fails here
            if 0 in image.size:
                return "has zero width or height"
    except OSError as err:
        if isinstance(err, (FileNotFoundError, PermissionError)):
            return f"cannot be read ({err.strerror})"
        return f"cannot be decoded as an image ({_one_line(err)})"
    except Exception as err:  # Pillow raises many kinds (SyntaxError, ValueError, DecompressionBombError)
        return f"cannot be decoded as an image ({_one_line(err)})"
    return None


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def find_problems(
    dataset: DMLDataset, *, decode: bool = False, workers: int | None = None
) -> tuple[list[Problem], int]:
    """Every unreadable image of every split, and how many files were checked (in-memory splits: none)."""
    check = decode_problem if decode else quick_problem
    jobs = []
    for split in (dataset.train, dataset.val, dataset.test):
        if isinstance(split, ImageSet) and split.paths is not None:
            paths = split.paths
            jobs += [(split.name, paths[start : start + CHUNK]) for start in range(0, len(paths), CHUNK)]

    def run(job: tuple[str, list[str]]) -> list[Problem]:
        split, paths = job
        return [Problem(split, path, what) for path in paths if (what := check(path)) is not None]

    workers = workers or min(16, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [problem for found in pool.map(run, jobs) for problem in found]
    return problems, sum(len(paths) for _, paths in jobs)


def problems_sentence(dataset: str, problems: list[Problem], root: str = "") -> str:
    """One sentence naming the first bad file, what is wrong with it and how many others there are."""
    first = problems[0]
    more = ""
    if len(problems) > 1:
        root_flag = f" --root {root}" if root else ""
        more = (
            f" ({len(problems) - 1} more unreadable images; `langdml data check {dataset}{root_flag}` lists "
            "them all)"
        )
    return (
        f"{dataset}: image {first.path!r} of the {first.split} split {first.what}{more}; "
        "re-download or re-extract the dataset, or remove the file from its annotation files."
    )


def require_readable_images(dataset: DMLDataset, root: str = "") -> float:
    """The trial-start check: raise DatasetError naming the first unreadable image; returns seconds spent."""
    start = time.perf_counter()
    problems, _ = find_problems(dataset)
    if problems:
        raise DatasetError(problems_sentence(dataset.name, problems, root))
    return time.perf_counter() - start
