"""Decoded-image cache: each split decoded once, stored already resized, read through a memory map.

JPEG decoding dominates the CPU cost of a DML input pipeline, and a GPU node has few cores per trial. The
cache decodes every image of a split once, resizes it to the evaluation resize (short side, e.g. 256 for
224 px crops) exactly as ``eval_transform`` would, and appends it to one flat uint8 file; an index holds
the offsets, stored shapes and original sizes. It is keyed by dataset, split, size, interpolation,
decoding and a digest of the sources, built under a file lock and shared by every trial on the node (the
page cache holds one copy).

- Evaluation: the cached image *is* ``Resize(size)`` of the decoded original, so the unchanged
  ``eval_transform`` (its Resize is then a no-op) gives bit-identical tensors.
- Training: ``transforms.CachedRandomResizedCrop`` draws the crop box on the original size with
  torchvision's own parameters and cuts it from the cached copy (tolerance stated there).
- ``draft=True`` decodes JPEGs at a reduced DCT scale (PIL draft mode) no smaller than the stored size:
  faster for sources at least twice the stored size, not bit-identical (``langdml bench data`` measures it).

Disk: about ``N * size * size * 1.33 * 3`` bytes, e.g. 3.1 GB for CUB200 at 256 (more than its JPEGs).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from langdml_core.cache import atomic_write, cache_dir, locked
from langdml_core.data.base import ImageSet
from langdml_core.data.transforms import INTERPOLATION, SOURCE_SIZE

FORMAT_VERSION = 1


@dataclass
class CachedImageSet:
    """The images of an ImageSet from the cache; labels and class texts are the source's own."""

    source: ImageSet
    data_path: Path
    offsets: np.ndarray  # (N + 1,) byte offsets into the data file
    shapes: np.ndarray  # (N, 2) stored height, width
    source_sizes: np.ndarray  # (N, 2) original width, height
    _data: np.memmap | None = field(default=None, repr=False)

    @classmethod
    def open(cls, source: ImageSet, index_path: Path) -> CachedImageSet:
        with np.load(index_path) as index:
            cached = cls(
                source, index_path.with_suffix(".u8"), index["offsets"], index["shapes"], index["sources"]
            )
        if len(cached.shapes) != len(source):
            raise RuntimeError(
                f"Image cache {index_path} holds {len(cached.shapes)} images, expected {len(source)}."
            )
        return cached

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def labels(self) -> np.ndarray:
        return self.source.labels

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self) -> dict:  # DataLoader workers reopen the map instead of pickling its bytes
        return {**self.__dict__, "_data": None}

    def array(self, index: int) -> np.ndarray:
        """The stored (H, W, 3) uint8 image, a view into the memory map."""
        if self._data is None:
            self._data = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        h, w = self.shapes[index]
        return self._data[self.offsets[index] : self.offsets[index + 1]].reshape(int(h), int(w), 3)

    def load(self, index: int) -> Image.Image:
        """A PIL image carrying its original (width, height) in ``info`` for the training crop."""
        image = Image.fromarray(self.array(index))
        image.info[SOURCE_SIZE] = tuple(int(v) for v in self.source_sizes[index])
        return image


def cached_images(
    images: ImageSet,
    dataset: str,
    size: int,
    interpolation: str,
    *,
    draft: bool = False,
    num_workers: int = 0,
    folder: Path | None = None,
) -> CachedImageSet:
    """The split from the node's cache (``folder``, default $LANGDML_CACHE/images/<dataset>), built once
    under a lock when missing."""
    key = f"{images.name}-{size}-{interpolation}{'-draft' if draft else ''}-{source_digest(images)[:20]}"
    index_path = Path(folder or cache_dir("images", dataset)) / f"{key}.npz"
    if not index_path.exists():
        with locked(index_path):
            if not index_path.exists():
                build(images, size, interpolation, draft, index_path, num_workers)
    return CachedImageSet.open(images, index_path)


def source_digest(images: ImageSet) -> str:
    """sha256 over paths, sizes and modification times (or the pixels of in-memory images), in split order.

    ``cache.files_digest`` reads the head of every file: too slow for SOP's 120k images on each trial start.
    """
    h = hashlib.sha256(f"langdml-image-cache-v{FORMAT_VERSION}\n".encode())
    if images.paths is None:
        h.update(np.ascontiguousarray(images.images).data)
    else:
        for path in images.paths:
            st = os.stat(path)
            h.update(f"{os.path.abspath(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def decode(images: ImageSet, index: int, size: int, interpolation: str, draft: bool = False):
    """(Resize(size) of the decoded image as an (H, W, 3) uint8 array, original (width, height))."""
    if images.images is not None:
        image = Image.fromarray(images.images[index])
        return np.asarray(TF.resize(image, size, INTERPOLATION[interpolation])), image.size
    with Image.open(images.paths[index]) as image:  # type: ignore[index]
        source = image.size
        target = resized_size(source, size)
        if draft:
            image.draft("RGB", target)  # DCT-domain downscale to no less than target (JPEG only)
            resized = image.convert("RGB").resize(target, TF.pil_modes_mapping[INTERPOLATION[interpolation]])
        else:
            resized = TF.resize(image.convert("RGB"), size, INTERPOLATION[interpolation])
    return np.asarray(resized), source


def resized_size(source: tuple[int, int], size: int) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(size) of an image of (width, height) ``source``."""
    w, h = source
    if w <= h:
        return size, int(size * h / w)
    return int(size * w / h), size


class _Decoded(Dataset):
    def __init__(self, images: ImageSet, size: int, interpolation: str, draft: bool):
        self.images, self.size, self.interpolation, self.draft = images, size, interpolation, draft

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return decode(self.images, index, self.size, self.interpolation, self.draft)


def _keep(item):
    return item


def build(
    images: ImageSet, size: int, interpolation: str, draft: bool, index_path: Path, num_workers: int = 0
) -> None:
    """Decode and resize every image (in parallel workers), append them in order, then write the index."""
    n = len(images)
    offsets = np.zeros(n + 1, dtype=np.int64)
    shapes = np.zeros((n, 2), dtype=np.int32)
    sources = np.zeros((n, 2), dtype=np.int32)
    decoded = DataLoader(
        _Decoded(images, size, interpolation, draft),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_keep,
    )

    def write_data(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for i, (array, source) in enumerate(decoded):
                f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
                shapes[i] = array.shape[:2]
                sources[i] = source
                offsets[i + 1] = offsets[i] + array.size

    atomic_write(index_path.with_suffix(".u8"), write_data)

    # The index is written last: its presence means the data file is complete.
    def write_index(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, offsets=offsets, shapes=shapes, sources=sources)

    atomic_write(index_path, write_index)
