"""CUB200-2011 in the zero-shot DML split: classes 1-100 train, classes 101-200 test.

The official ``train_test_split.txt`` is the *classification* split (every class on both sides) and is
deliberately never read: deep metric learning evaluates on classes unseen in training.

``data.split=release`` is accepted and equals the official split: the release sorts the class folders
``NNN.Name`` with Python's sorted(), i.e. by their zero-padded id, and takes the first half (1-100) for training.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

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

NAME = "cub200"
LAYOUTS = CHOICES["data.layout"]
LAST_TRAIN_CLASS = 100
EXPECTED = {
    "images": 11788,
    "train_images": 5864,
    "test_images": 5924,
    "train_classes": 100,
    "test_classes": 100,
}
LAYOUT_HELP = (
    "ROOT/CUB_200_2011/ (or that folder itself) with images.txt, image_class_labels.txt, classes.txt and "
    "images/NNN.Name/*.jpg, or class folders ROOT/(images/)NNN.Name/*.jpg"
)
CLASS_FOLDER = re.compile(r"^(\d+)\.(.+)$")


def class_text(folder_name: str) -> str:
    """'001.Black_footed_Albatross' -> 'Black footed Albatross' (the text the language model sees)."""
    return folder_name.rsplit(".", 1)[-1].replace("_", " ")


def _read_pairs(path: Path) -> dict[int, str]:
    """The '<integer id> <value>' lines of a CUB annotation file."""
    if not path.is_file():
        raise DatasetError(f"{NAME} annotation file {str(path)!r} is missing; expected {LAYOUT_HELP}.")
    pairs = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{NAME}: line {number} of {str(path)!r} is not '<id> <value>': {line!r}.")
        pairs[int(parts[0])] = parts[1].strip()
    return pairs


def _official(base: Path) -> tuple[list[tuple[str, int]], dict[int, str]]:
    images = _read_pairs(base / "images.txt")
    labels = _read_pairs(base / "image_class_labels.txt")
    classes = _read_pairs(base / "classes.txt")
    texts = {cid: class_text(folder) for cid, folder in classes.items()}
    samples = []
    for image_id, rel in images.items():
        cid = labels.get(image_id, "")
        if not cid.isdigit() or int(cid) not in texts:
            raise DatasetError(
                f"{NAME}: image {image_id} ({rel}) has no class in image_class_labels.txt that classes.txt "
                f"defines (in {str(base)!r})."
            )
        samples.append((str(base / "images" / rel), int(cid)))
    require_images(NAME, base / "images.txt", [path for path, _ in samples])
    return samples, texts


def _folders(base: Path) -> tuple[list[tuple[str, int]], dict[int, str]]:
    top = base / "images" if (base / "images").is_dir() else base
    samples: list[tuple[str, int]] = []
    texts: dict[int, str] = {}
    for entry in sorted(os.scandir(top), key=lambda e: e.name):
        match = CLASS_FOLDER.match(entry.name)
        if not match or not entry.is_dir():
            continue
        cid = int(match.group(1))
        if cid in texts:
            raise DatasetError(f"{NAME}: two class folders in {str(top)!r} have the id {cid}.")
        texts[cid] = class_text(entry.name)
        samples += [(path, cid) for path in list_images(entry.path)]
    if not texts:
        raise DatasetError(f"{NAME}: no class folders 'NNN.Name' in {str(top)!r}; expected {LAYOUT_HELP}.")
    return samples, texts


@DATASETS.register(NAME)
def build_cub200(
    root: Path | str, *, layout: str = "auto", check_counts: bool = True, split: str = "official"
) -> DMLDataset:
    """CUB200-2011, split by class id (1-100 train, 101-200 test); layout 'auto' prefers the annotation files."""
    check_layout(NAME, layout, LAYOUTS)
    check_split(NAME, split)  # release == official here (module docstring)
    root = Path(os.path.abspath(require_dir(NAME, root, LAYOUT_HELP)))
    base = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
    if layout == "auto":
        official = (base / "images.txt").is_file() and (base / "classes.txt").is_file()
        layout = "official" if official else "folders"
    samples, texts = _official(base) if layout == "official" else _folders(base)
    train = make_split(NAME, "train", [s for s in samples if s[1] <= LAST_TRAIN_CLASS], texts)
    test = make_split(NAME, "test", [s for s in samples if s[1] > LAST_TRAIN_CLASS], texts)
    if check_counts:
        missing = classes_without_images(samples, texts, range(1, 201))
        assert_counts(NAME, root, split_counts(train, test), EXPECTED, missing)
    return DMLDataset(
        name=NAME, train=train, test=test, default_image_size=224, info={"layout": layout, "root": str(root)}
    )
