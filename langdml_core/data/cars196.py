"""CARS196 in the zero-shot DML split: official classes 1-98 train, classes 99-196 test.

The split is by the OFFICIAL class id (the order of ``class_names`` in cars_annos.mat), which is not the
alphabetical order of the names; the per-image ``test`` flag is the classification split and is ignored.

``data.split=release`` is the paper's release instead: its class folders are named by class name and
sorted with Python's sorted() (byte order: "AM General Hummer SUV 2000" before "Acura ..."), the first 98
are train. Here that is the 98 official names first in sorted() order (ties: lower id), whatever the
layout; labels within a split still follow the official id (no metric depends on label order). On the real
196 names (``langdml_core/resources/cars196_class_names.txt``) the two splits disagree on 0 classes: the
official list is grouped by make in byte order and its 98/99 boundary falls between two makes ("Eagle" |
"FIAT"), so both give the same train/test partition (computed in tests/test_datasets.py from that file;
writing '/' as '-' or ':' in folder names does not change it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from langdml_core.config import CHOICES
from langdml_core.data.base import (
    DATASETS,
    DatasetError,
    DMLDataset,
    check_layout,
    check_split,
    classes_without_images,
    list_images,
    make_split,
    require_dir,
    require_images,
    split_counts,
)
from langdml_core.data.base import check_counts as assert_counts

NAME = "cars196"
LAYOUTS = CHOICES["data.layout"]
LAST_TRAIN_CLASS = 98
EXPECTED = {
    "images": 16185,
    "train_images": 8054,
    "test_images": 8131,
    "train_classes": 98,
    "test_classes": 98,
}
LAYOUT_HELP = (
    "ROOT/cars_annos.mat with ROOT/car_ims/*.jpg, or one folder per official class name ROOT/<class name>/*.jpg "
    "plus ROOT/cars_annos.mat or ROOT/class_names.txt giving the official class order"
)


def read_mat(path: Path, names_only: bool = False) -> tuple[list[str], list[tuple[str, int]]]:
    """Official class names (index i = class id i+1) and (relative image path, class id) pairs."""
    if not path.is_file():
        raise DatasetError(f"{NAME} annotation file {str(path)!r} is missing; expected {LAYOUT_HELP}.")
    wanted = ["class_names"] if names_only else ["class_names", "annotations"]
    try:
        mat = loadmat(str(path), squeeze_me=True, variable_names=wanted)
        names = [str(name).strip() for name in np.atleast_1d(mat["class_names"])]
        if names_only:
            return names, []
        annos = np.atleast_1d(mat["annotations"])
        pairs = [
            (str(rel), int(cid)) for rel, cid in zip(annos["relative_im_path"], annos["class"], strict=True)
        ]
    except (OSError, ValueError, KeyError, IndexError, TypeError, NotImplementedError) as err:
        raise DatasetError(
            f"{NAME}: cannot read {str(path)!r} as the official cars_annos.mat ({type(err).__name__}: {err})."
        ) from err
    bad = [cid for _, cid in pairs if not 1 <= cid <= len(names)]
    if bad:
        raise DatasetError(f"{NAME}: {str(path)!r} uses class id {bad[0]} but has {len(names)} class names.")
    return names, pairs


def _official(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    names, pairs = read_mat(root / "cars_annos.mat")
    samples = [(str(root / rel), cid) for rel, cid in pairs]
    require_images(NAME, root / "cars_annos.mat", [path for path, _ in samples])
    return samples, names


def _official_names(root: Path) -> list[str]:
    if (root / "cars_annos.mat").is_file():
        return read_mat(root / "cars_annos.mat", names_only=True)[0]
    if (root / "class_names.txt").is_file():
        return [line.strip() for line in (root / "class_names.txt").read_text().splitlines() if line.strip()]
    raise DatasetError(
        f"{NAME} class folders at {str(root)!r} need the official class order: sorting the folder names "
        "alphabetically would give a wrong train/test split (train is classes 1-98 in the order of "
        "cars_annos.mat). Put cars_annos.mat, or class_names.txt with the 196 official class names one per "
        "line in official order, into that folder."
    )


def _key(name: str) -> str:
    """Folder names cannot hold '/' ('Ram C/V Cargo Van Minivan 2012'); mirrors write '-' instead."""
    return re.sub(r"[\\/:]", "-", " ".join(name.split())).casefold()


def _folders(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    names = _official_names(root)
    ids: dict[str, int] = {}
    for cid, name in enumerate(names, 1):
        ids.setdefault(_key(name), cid)
    samples: list[tuple[str, int]] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if _key(entry.name) not in ids:
            raise DatasetError(
                f"{NAME}: folder {entry.path!r} is not an official class name; expected {LAYOUT_HELP}."
            )
        samples += [(path, ids[_key(entry.name)]) for path in list_images(entry.path)]
    return samples, names


@DATASETS.register(NAME)
def build_cars196(
    root: Path | str, *, layout: str = "auto", check_counts: bool = True, split: str = "official"
) -> DMLDataset:
    """CARS196 split by official class id (or as the release, see the module docstring); layout 'auto'
    prefers cars_annos.mat with car_ims/."""
    check_layout(NAME, layout, LAYOUTS)
    check_split(NAME, split)
    root = Path(os.path.abspath(require_dir(NAME, root, LAYOUT_HELP)))
    if layout == "auto":
        official = (root / "cars_annos.mat").is_file() and (root / "car_ims").is_dir()
        layout = "official" if official else "folders"
    samples, names = _official(root) if layout == "official" else _folders(root)
    texts = dict(enumerate(names, 1))
    train_ids = train_class_ids(names, split)
    train = make_split(NAME, "train", [s for s in samples if s[1] in train_ids], texts)
    test = make_split(NAME, "test", [s for s in samples if s[1] not in train_ids], texts)
    if check_counts:
        missing = classes_without_images(samples, texts, range(1, 197))
        assert_counts(NAME, root, split_counts(train, test), EXPECTED, missing)
    return DMLDataset(
        name=NAME,
        train=train,
        test=test,
        default_image_size=224,
        info={"layout": layout, "root": str(root), "split": split},
    )


def packaged_class_names() -> list[str]:
    """The 196 official class names in official order, packaged in ``resources/cars196_class_names.txt``
    (its first line, a comment, names the public source)."""
    from importlib.resources import files

    text = files("langdml_core.resources").joinpath("cars196_class_names.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def train_class_ids(names: list[str], split: str = "official") -> set[int]:
    """Official ids (1-based, index in ``names`` + 1) of the training classes under ``data.split``:
    ids 1-98 (official), or the 98 ids whose names come first in Python's sorted() order (release)."""
    ids = range(1, len(names) + 1)
    if split == "release":
        return set(sorted(ids, key=lambda cid: (names[cid - 1], cid))[:LAST_TRAIN_CLASS])
    return set(ids[:LAST_TRAIN_CLASS])
