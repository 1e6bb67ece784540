"""Stanford Online Products: the official Ebay_train.txt / Ebay_test.txt split (11,318 / 11,316 products).

A product class has no name of its own, so its text is its super-class folder ('coffee_maker_final' ->
'coffee maker'): all products of one super-class share a text, as in the paper.

``data.split=release`` is accepted and equals the official split: the release also reads Ebay_train.txt /
Ebay_test.txt.
"""

from __future__ import annotations

import os
from pathlib import Path

from langdml_core.data.base import (
    DATASETS,
    DatasetError,
    DMLDataset,
    check_layout,
    check_split,
    make_split,
    require_dir,
    require_images,
    split_counts,
)
from langdml_core.data.base import check_counts as assert_counts

NAME = "sop"
LAYOUTS = ("auto", "official")
EXPECTED = {
    "images": 120053,
    "train_images": 59551,
    "test_images": 60502,
    "train_classes": 11318,
    "test_classes": 11316,
}
LAYOUT_HELP = (
    "ROOT/Stanford_Online_Products/ (or that folder itself) with Ebay_train.txt, Ebay_test.txt and the "
    "<super class>_final/ image folders"
)
HEADER = ["image_id", "class_id", "super_class_id", "path"]


def class_text(super_folder: str) -> str:
    """'coffee_maker_final' -> 'coffee maker'."""
    return super_folder.removesuffix("_final").replace("_", " ")


def _read_split(base: Path, filename: str) -> tuple[list[tuple[str, int]], dict[int, str], dict[int, int]]:
    """(path, class id) samples, class id -> text and class id -> super-class id of one Ebay_*.txt."""
    path = base / filename
    if not path.is_file():
        raise DatasetError(f"{NAME} annotation file {str(path)!r} is missing; expected {LAYOUT_HELP}.")
    lines = path.read_text().splitlines()
    if not lines or lines[0].split() != HEADER:
        raise DatasetError(f"{NAME}: {str(path)!r} does not start with the header line {' '.join(HEADER)!r}.")
    samples, texts, supers = [], {}, {}
    for number, line in enumerate(lines[1:], 2):
        parts = line.split(maxsplit=3)
        if not parts:
            continue
        if len(parts) != 4 or not (parts[1].isdigit() and parts[2].isdigit()):
            raise DatasetError(
                f"{NAME}: line {number} of {str(path)!r} is not '{' '.join(HEADER)}': {line!r}."
            )
        cid, sid, rel = int(parts[1]), int(parts[2]), parts[3]
        if supers.setdefault(cid, sid) != sid:
            raise DatasetError(f"{NAME}: class {cid} has two super-classes in {str(path)!r} (line {number}).")
        texts.setdefault(cid, class_text(rel.split("/", 1)[0]))
        samples.append((str(base / rel), cid))
    require_images(NAME, path, [p for p, _ in samples])
    return samples, texts, supers


@DATASETS.register(NAME)
def build_sop(
    root: Path | str, *, layout: str = "auto", check_counts: bool = True, split: str = "official"
) -> DMLDataset:
    """Stanford Online Products with the official class-disjoint split; texts are super-class names."""
    check_layout(NAME, layout, LAYOUTS)
    check_split(NAME, split)  # release == official here (module docstring)
    root = Path(os.path.abspath(require_dir(NAME, root, LAYOUT_HELP)))
    base = root / "Stanford_Online_Products" if (root / "Stanford_Online_Products").is_dir() else root
    train_samples, train_texts, train_supers = _read_split(base, "Ebay_train.txt")
    test_samples, test_texts, test_supers = _read_split(base, "Ebay_test.txt")
    shared = sorted(set(train_texts) & set(test_texts))
    if shared:
        raise DatasetError(
            f"{NAME}: {len(shared)} class ids occur in both Ebay_train.txt and Ebay_test.txt "
            f"(first: {shared[0]}) under {str(base)!r}; the official split is class-disjoint."
        )
    train = make_split(NAME, "train", train_samples, train_texts)
    test = make_split(NAME, "test", test_samples, test_texts)
    if check_counts:
        assert_counts(NAME, root, split_counts(train, test), EXPECTED)
    info = {
        "layout": "official",
        "root": str(root),
        "super_class_of_train": [train_supers[cid] for cid in train.class_ids],
        "super_class_of_test": [test_supers[cid] for cid in test.class_ids],
    }
    return DMLDataset(name=NAME, train=train, test=test, default_image_size=224, info=info)
