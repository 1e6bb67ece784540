"""Dataset containers shared by every loader, the dataset registry, and the validation split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from langdml_core.config import CHOICES
from langdml_core.errors import DatasetError
from langdml_core.registry import Registry, suggest

DATASETS = Registry("dataset")
"""name -> builder(root: Path, *, layout: str, check_counts: bool, split: str) -> DMLDataset"""

SPLITS = CHOICES["data.split"]
"""``data.split`` values: the dataset's official zero-shot split, or the split the paper's release used."""


@dataclass
class ImageSet:
    """One split: images (files or an in-memory array) with contiguous labels 0..C-1.

    ``class_texts[c]`` is the text of class c (an expert name, a super-class name for SOP), and
    ``class_ids[c]`` the dataset's own id of that class (e.g. CUB 101..200), kept for provenance.
    """

    name: str
    labels: np.ndarray
    class_texts: list[str]
    class_ids: list[int]
    paths: list[str] | None = None
    images: np.ndarray | None = None  # (N, H, W, 3) uint8, for generated data

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if (self.paths is None) == (self.images is None):
            raise ValueError("An ImageSet needs exactly one of paths or images.")
        n = len(self.paths) if self.paths is not None else len(self.images)
        if n != len(self.labels):
            raise ValueError(f"{self.name}: {n} images but {len(self.labels)} labels.")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_texts)):
            raise ValueError(f"{self.name}: labels must lie in 0..{len(self.class_texts) - 1}.")

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """sha256 of what the split is: its class texts, labels and images (for files: each path relative to
        their common folder and its size, one stat per file and no read; for generated data: the pixels).
        The same files under another root give the same digest; a changed label, name or file does not."""
        import hashlib

        h = hashlib.sha256()
        h.update("\n".join(self.class_texts).encode("utf-8", "surrogateescape"))
        h.update(self.labels.tobytes())
        if self.images is not None:
            h.update(np.ascontiguousarray(self.images).tobytes())
        else:
            common = os.path.commonpath(self.paths) if self.paths else ""
            for path in self.paths:  # type: ignore[union-attr]
                h.update(
                    f"{os.path.relpath(path, common)}\0{os.path.getsize(path)}\n".encode(
                        "utf-8", "surrogateescape"
                    )
                )
        return h.hexdigest()

    @property
    def num_classes(self) -> int:
        return len(self.class_texts)

    def load(self, index: int) -> Image.Image:
        if self.images is not None:
            return Image.fromarray(self.images[index])
        path = self.paths[index]  # type: ignore[index]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except Exception as err:  # noqa: BLE001 - Pillow raises many kinds; name the file in one sentence
            raise DatasetError(
                f"image {path!r} of the {self.name} split cannot be decoded ({type(err).__name__}: "
                f"{' '.join(str(err).split())}); `langdml data check DATASET --decode` lists every such "
                "file: re-download it or remove it."
            ) from None

    def first_per_class(self, n: int) -> ImageSet:
        """At most the first n images of each class, in the split's order (classes and labels unchanged)."""
        counts = np.zeros(len(self.class_texts), dtype=np.int64)
        keep = []
        for i, label in enumerate(self.labels):
            if counts[label] < n:
                keep.append(i)
                counts[label] += 1
        return ImageSet(
            name=self.name,
            labels=self.labels[keep],
            class_texts=list(self.class_texts),
            class_ids=list(self.class_ids),
            paths=[self.paths[i] for i in keep] if self.paths is not None else None,
            images=self.images[keep] if self.images is not None else None,
        )

    def subset_classes(self, classes: list[int] | np.ndarray, name: str) -> ImageSet:
        """The images of the given classes, relabelled 0..len(classes)-1 in the given order."""
        classes = [int(c) for c in classes]
        remap = {c: i for i, c in enumerate(classes)}
        keep = np.flatnonzero(np.isin(self.labels, classes))
        return ImageSet(
            name=name,
            labels=np.array([remap[int(self.labels[i])] for i in keep], dtype=np.int64),
            class_texts=[self.class_texts[c] for c in classes],
            class_ids=[self.class_ids[c] for c in classes],
            paths=[self.paths[i] for i in keep] if self.paths is not None else None,
            images=self.images[keep] if self.images is not None else None,
        )


@dataclass
class DMLDataset:
    """A zero-shot DML dataset: train and test classes are disjoint; ``val`` is carved from train."""

    name: str
    train: ImageSet
    test: ImageSet
    val: ImageSet | None = None
    default_image_size: int = 224
    info: dict = field(default_factory=dict)


def check_counts(
    dataset: str,
    root: Path,
    found: dict[str, int],
    expected: dict[str, int],
    missing_classes: Sequence[str] = (),
) -> None:
    """Fail loudly on a wrong or partial download, naming every count that differs and, where the loader
    knows them, the classes that have no images (e.g. a class folder that is not there)."""
    wrong = [f"{k}: expected {expected[k]}, found {found[k]}" for k in expected if found[k] != expected[k]]
    if wrong:
        if missing_classes:
            shown = ", ".join(missing_classes[:3]) + (", ..." if len(missing_classes) > 3 else "")
            wrong.append(f"{len(missing_classes)} official class(es) without images: {shown}")
        raise DatasetError(
            f"{dataset} at {str(root)!r} does not match the official dataset ({'; '.join(wrong)}); "
            "re-download or re-extract it (data.check_counts=false is meant only for small test fixtures)."
        )


def require_dir(dataset: str, root: Path, layout_help: str) -> Path:
    root = Path(root).expanduser()
    if not str(root) or not root.is_dir():
        raise DatasetError(f"{dataset} root {str(root)!r} is not a directory; expected {layout_help}.")
    return root


# --- helpers shared by the file-based loaders (cub200, cars196, sop, folder) ---

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def check_layout(dataset: str, layout: str, allowed: tuple[str, ...]) -> None:
    """Reject a misspelt ``data.layout`` instead of silently guessing one."""
    if layout not in allowed:
        raise DatasetError(
            f"{dataset}: unknown layout {layout!r}{suggest(layout, allowed)}; expected one of: {', '.join(allowed)}."
        )


def check_split(dataset: str, split: str, allowed: tuple[str, ...] = SPLITS) -> None:
    """Reject a ``data.split`` this dataset does not have (the release's split exists for the paper's three)."""
    if split not in allowed:
        raise DatasetError(
            f"{dataset}: data.split={split!r} is not available{suggest(split, allowed)}; expected one of: "
            f"{', '.join(allowed)} (the release's split exists for cub200, cars196 and sop)."
        )


def list_images(folder: Path | str) -> list[str]:
    """Paths of the image files directly inside ``folder`` (hidden files skipped), sorted by name."""
    with os.scandir(folder) as entries:
        return sorted(
            e.path
            for e in entries
            if not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
            and _is_file(e)
        )


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError as err:  # a symlink loop (ELOOP): name it instead of a traceback
        raise DatasetError(
            f"image {entry.path!r} cannot be followed ({err.strerror}); remove or fix the link."
        ) from None


def require_images(dataset: str, listed_in: Path, paths: list[str]) -> None:
    """Every image an annotation file lists must exist (one listing per folder: fast even for SOP)."""
    present: dict[str, set[str]] = {}
    missing = []
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in present:
            present[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        if name not in present[folder]:
            missing.append(path)
    gone = sorted({os.path.dirname(path) for path in missing if not os.path.isdir(os.path.dirname(path))})
    if gone:
        others = f" (and {len(gone) - 1} more folders)" if len(gone) > 1 else ""
        raise DatasetError(
            f"{dataset}: folder {gone[0]!r}{others}, which holds images listed in {str(listed_in)!r}, is "
            "missing; the download looks partial, re-download or re-extract it."
        )
    if missing:
        raise DatasetError(
            f"{dataset}: {len(missing)} of {len(paths)} images listed in {str(listed_in)!r} are missing "
            f"(first: {missing[0]!r}); the download looks partial, re-download or re-extract it."
        )


def make_split(dataset: str, name: str, samples: list[tuple[str, int]], texts: dict[int, str]) -> ImageSet:
    """An ImageSet from (path, dataset class id) pairs: labels follow the sorted ids, images sort by (id, path)."""
    if not samples:
        raise DatasetError(f"{dataset}: the {name} split has no images; check the root and the layout.")
    ids = sorted({cid for _, cid in samples})
    for cid in ids:
        require_text(dataset, texts[cid])
    label = {cid: i for i, cid in enumerate(ids)}
    samples = sorted(samples, key=lambda s: (s[1], s[0]))
    return ImageSet(
        name=name,
        labels=np.array([label[cid] for _, cid in samples], dtype=np.int64),
        class_texts=[texts[cid] for cid in ids],
        class_ids=ids,
        paths=[path for path, _ in samples],
    )


def require_text(dataset: str, text: str) -> None:
    """A class text goes to a language model: refuse one that is not valid UTF-8 (a folder or annotation name
    whose undecodable bytes Python kept as surrogates) before any model is built."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        raise DatasetError(
            f"{dataset}: class name {raw!r} is not valid UTF-8 (its texts go to the language model); rename "
            "it to UTF-8 text, e.g. `convmv -f latin1 -t utf8 --notest -r ROOT`."
        ) from None


def classes_without_images(
    samples: list[tuple[str, int]], names: dict[int, str], expected_ids: range
) -> list[str]:
    """'class 37 (Name)' for every official class id that no image belongs to (for check_counts)."""
    found = {cid for _, cid in samples}
    return [
        f"class {cid} ({names[cid]})" if cid in names else f"class {cid}"
        for cid in expected_ids
        if cid not in found
    ]


def split_counts(train: ImageSet, test: ImageSet) -> dict[str, int]:
    """The counts ``check_counts`` compares against a dataset's official numbers."""
    return {
        "images": len(train) + len(test),
        "train_images": len(train),
        "test_images": len(test),
        "train_classes": train.num_classes,
        "test_classes": test.num_classes,
    }


def split_validation(train: ImageSet, n_val: int, fold: int = 0) -> tuple[ImageSet, ImageSet]:
    """Hold out ``n_val`` whole training classes (fixed choice, independent of the run seed): the ``fold``-th
    block of ``n_val`` in one fixed permutation of the classes, so that folds never share a class."""
    if not 0 < n_val <= train.num_classes - 2:
        raise DatasetError(
            f"data.val_classes={n_val} must leave at least 2 training classes out of {train.num_classes}."
        )
    folds = train.num_classes // n_val
    if not 0 <= fold < folds:
        raise DatasetError(
            f"data.val_fold={fold} must lie in 0..{folds - 1}: {train.num_classes} training classes hold "
            f"{folds} disjoint blocks of data.val_classes={n_val}."
        )
    order = np.random.default_rng(12345).permutation(train.num_classes)
    held = order[fold * n_val : (fold + 1) * n_val]
    val_classes, train_classes = sorted(held), sorted(np.setdiff1d(order, held))
    return train.subset_classes(train_classes, "train"), train.subset_classes(val_classes, "val")
