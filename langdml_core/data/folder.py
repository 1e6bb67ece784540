"""A user's own dataset as class folders: ROOT/train/<class name>/ and ROOT/test/<class name>/.

The class text is the folder name ('red_fox' -> 'red fox'), so folder names should be meaningful words.
Train and test classes must be disjoint, as in every zero-shot DML benchmark.
"""

from __future__ import annotations

import os
from pathlib import Path

from langdml_core.data.base import (
    DATASETS,
    IMAGE_SUFFIXES,
    DatasetError,
    DMLDataset,
    check_layout,
    check_split,
    list_images,
    make_split,
    require_dir,
)

NAME = "folder"
LAYOUTS = ("auto", "folders")
LAYOUT_HELP = (
    f"ROOT/train/<class name>/ and ROOT/test/<class name>/ holding images ({' '.join(IMAGE_SUFFIXES)}), "
    "with no class name in both"
)


def class_text(folder_name: str) -> str:
    """'red_fox' -> 'red fox'."""
    return folder_name.replace("_", " ")


def _classes(split_dir: Path) -> dict[str, list[str]]:
    """Class folder name -> sorted image paths, in folder-name order."""
    if not split_dir.is_dir():
        raise DatasetError(f"{NAME} dataset: {str(split_dir)!r} is not a directory; expected {LAYOUT_HELP}.")
    classes = {}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        try:
            is_dir = entry.is_dir()
        except OSError as err:  # a symlink loop (ELOOP) or a link into an unreadable place
            raise DatasetError(
                f"{NAME} dataset: {entry.path!r} cannot be followed ({err.strerror}); expected a class folder "
                "or a link to one: remove or fix the link."
            ) from None
        if not is_dir or entry.name.startswith("."):
            continue
        images = list_images(entry.path)
        if not images:
            raise DatasetError(
                f"{NAME} dataset: class folder {entry.path!r} contains no images; expected {LAYOUT_HELP}."
            )
        classes[entry.name] = images
    if not classes:
        raise DatasetError(f"{NAME} dataset: no class folders in {str(split_dir)!r}; expected {LAYOUT_HELP}.")
    return classes


@DATASETS.register(NAME)
def build_folder(
    root: Path | str, *, layout: str = "auto", check_counts: bool = True, split: str = "official"
) -> DMLDataset:
    """Class-folder dataset; class ids are 1.. over train then test folders (check_counts has nothing to check)."""
    check_layout(NAME, layout, LAYOUTS)
    check_split(NAME, split, ("official",))  # the user's own train/ and test/ folders
    root = Path(os.path.abspath(require_dir(NAME, root, LAYOUT_HELP)))
    train_classes, test_classes = _classes(root / "train"), _classes(root / "test")
    shared = sorted(set(train_classes) & set(test_classes))
    if shared:
        raise DatasetError(
            f"{NAME} dataset at {str(root)!r}: {len(shared)} class names occur in both train and test "
            f"(first: {shared[0]!r}); DML tests on unseen classes, so they must be disjoint."
        )
    ids = {name: cid for cid, name in enumerate([*train_classes, *test_classes], 1)}
    texts = {cid: class_text(name) for name, cid in ids.items()}

    def samples(classes: dict[str, list[str]]) -> list[tuple[str, int]]:
        return [(path, ids[name]) for name, paths in classes.items() for path in paths]

    train = make_split(NAME, "train", samples(train_classes), texts)
    test = make_split(NAME, "test", samples(test_classes), texts)
    return DMLDataset(
        name=NAME,
        train=train,
        test=test,
        default_image_size=224,
        info={"layout": "folders", "root": str(root)},
    )
