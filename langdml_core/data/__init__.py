"""Datasets: loaders (registered by name), splits, transforms and the training batch samplers."""

from __future__ import annotations

import os
import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset

from langdml_core.config import DataConfig
from langdml_core.data import cars196, cub200, demo, folder, sop  # noqa: F401  (registration)
from langdml_core.data.base import DATASETS, DatasetError, DMLDataset, ImageSet, split_validation
from langdml_core.data.check import find_problems, problems_sentence, require_readable_images
from langdml_core.data.image_cache import CachedImageSet, cached_images
from langdml_core.data.sampler import SAMPLERS

__all__ = [
    "DATASETS",
    "DatasetError",
    "DMLDataset",
    "ImageSet",
    "TransformedSet",
    "build_dataset",
    "loader_images",
    "loader_workers",
    "train_loader",
    "eval_loader",
]


def build_dataset(cfg: DataConfig) -> DMLDataset:
    """Load the named dataset (every image file checked to be whole: a cheap look at its first and last
    bytes, see ``data.check``); if asked, carve the class-disjoint validation split and keep the first
    images of each training class (validation classes keep all theirs) and of each test class."""
    root = resolve_root(cfg)
    dataset = DATASETS.create(
        cfg.name, root, layout=cfg.layout, check_counts=cfg.check_counts, split=cfg.split
    )
    require_readable_images(dataset, root)
    if cfg.val_classes:
        dataset.train, dataset.val = split_validation(dataset.train, cfg.val_classes, cfg.val_fold)
    if cfg.train_images_per_class:  # after the carve: the validation split does not depend on it
        dataset.train = dataset.train.first_per_class(cfg.train_images_per_class)
    if cfg.test_images_per_class:
        dataset.test = dataset.test.first_per_class(cfg.test_images_per_class)
    return dataset


def resolve_root(cfg: DataConfig) -> str:
    """data.root, else $LANGDML_DATA_ROOT/<dataset name> (how cluster nodes find their datasets)."""
    if cfg.root or cfg.name == "demo":
        return cfg.root
    base = os.environ.get("LANGDML_DATA_ROOT", "")
    if not base:
        raise DatasetError(
            f"{cfg.name}: no dataset root given: set data.root (--root DIR for `langdml data check`) to the "
            f"dataset's folder, or LANGDML_DATA_ROOT to the folder that holds {cfg.name}/."
        )
    return os.path.join(base, cfg.name)


def loader_images(
    images: ImageSet, cfg: DataConfig, dataset: str, size: int, interpolation: str, num_workers: int = 0
) -> ImageSet | CachedImageSet:
    """The split as the loaders read it: from the decoded-image cache when ``data.cache_images`` is on
    (built, the first time, by ``num_workers`` processes)."""
    if not cfg.cache_images:
        return images
    return cached_images(images, dataset, size, interpolation, draft=cfg.jpeg_draft, num_workers=num_workers)


def loader_workers(num_workers: int, threads: int, device: str) -> int:
    """``data.num_workers`` as the loaders use it; -1 derives it from the trial's CPU share (``threads``).

    On the CPU the model's forward and backward pass need every thread, and a worker would take one from
    it: load in the training process (0). On a GPU the training process only feeds the device: it keeps
    one core and the rest decode (``threads - 1``, at least 1). ``langdml bench data`` prints images/s per
    worker count, to size the CPU share against a GPU's training rate.
    """
    if num_workers >= 0:
        return num_workers
    if str(device).startswith("cpu"):
        return 0
    return max(1, threads - 1)


class TransformedSet(Dataset):
    """(image tensor, label) pairs of an ImageSet (or its cached copy) under a transform."""

    def __init__(self, images: ImageSet | CachedImageSet, transform):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images.load(index)), int(self.images.labels[index])


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def train_loader(
    images: ImageSet | CachedImageSet,
    transform,
    *,
    batch_size: int,
    samples_per_class: int,
    seed: int,
    num_workers: int = 0,
    sampler: str = "balanced",
) -> DataLoader:
    """Batches from the ``data.sampler`` named ``sampler`` (see ``data.sampler.SAMPLERS``)."""
    batches = SAMPLERS[sampler](images.labels, batch_size, samples_per_class, seed=seed)
    return DataLoader(
        TransformedSet(images, transform),
        batch_sampler=batches,
        num_workers=num_workers,
        worker_init_fn=_seed_worker,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


def eval_loader(
    images: ImageSet | CachedImageSet, transform, *, batch_size: int, num_workers: int = 0
) -> DataLoader:
    return DataLoader(
        TransformedSet(images, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,  # evaluated every epoch: no re-fork per pass
        # Its own generator: iterating a DataLoader draws a seed from the global torch RNG otherwise, and the
        # training's augmentation draws from that RNG, so eval.every would change the training.
        generator=torch.Generator().manual_seed(0),
    )


def check_command(name: str, root: str, layout: str, check_counts: bool, decode: bool) -> str:
    """``langdml data check``: load the dataset as a trial would, check every image; the summary line.

    Every unreadable image is printed to stderr; the DatasetError names the first one."""
    root = resolve_root(DataConfig(name=name, root=root))
    start = time.perf_counter()
    dataset = DATASETS.create(name, root, layout=layout, check_counts=check_counts)
    problems, checked = find_problems(dataset, decode=decode)
    for problem in problems:
        print(f"{problem.split}: {problem.path} {problem.what}", file=sys.stderr)
    if problems:
        raise DatasetError(problems_sentence(name, problems, root))
    splits = ", ".join(
        f"{split.name} {len(split)} images / {split.num_classes} classes"
        for split in (dataset.train, dataset.test)
    )
    how = "decoded in full" if decode else "whole by their first and last bytes; --decode decodes them"
    files = f"{checked} image files {how}" if checked else "images generated in memory, no files to check"
    counts = "official counts match" if check_counts else "counts not checked"
    where = f" at {dataset.info['root']} (layout {dataset.info['layout']})" if "root" in dataset.info else ""
    return f"{name}{where}: {splits}; {counts}; {files} ({time.perf_counter() - start:.1f} s): OK"
