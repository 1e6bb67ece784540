"""Training batch samplers, by ``data.sampler`` name (:data:`SAMPLERS`); both fully determined by (seed, epoch).

``balanced`` (:class:`ClassBalancedBatchSampler`): each batch holds B/m distinct classes with m images each.
An epoch is defined by the data, not by a step count: it has max(N // B, ceil(C / (B/m))) batches
and visits every class at least once (classes are drawn from consecutive random permutations of all
classes, the next permutation starting only when the previous one is used up). Within a class, images
are drawn from a shuffled queue so that every image is seen before any repeats; classes with fewer than
m images repeat images inside a batch.

``release`` (:class:`ClassRandomBatchSampler`): the public release's "class_random" sampler (Roth et al.
2022, release commit b07ac5b, as restated in the project's method notes, section 11): each batch is B/m
class draws uniformly WITH replacement (a class can be drawn twice), then m images per draw uniformly WITH
replacement from that class (the same image can appear twice, differently augmented); an epoch is
floor(N / B) batches.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from torch.utils.data import Sampler

from langdml_core.errors import ConfigError


class _EpochBatchSampler(Sampler[list[int]]):
    """What both samplers share: checked sizes, labels as int64, classes, and (seed, epoch) determinism."""

    num_batches: int

    def __init__(self, labels, batch_size: int, samples_per_class: int, seed: int = 0):
        self.labels = np.asarray(labels, dtype=np.int64)
        if batch_size % samples_per_class:
            raise ConfigError(
                f"batch_size={batch_size} is not a multiple of samples_per_class={samples_per_class}."
            )
        self.classes = np.unique(self.labels)
        self.per_batch = batch_size // samples_per_class
        self.batch_size = batch_size
        self.m = samples_per_class
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches


class ClassBalancedBatchSampler(_EpochBatchSampler):
    def __init__(self, labels, batch_size: int, samples_per_class: int, seed: int = 0):
        super().__init__(labels, batch_size, samples_per_class, seed)
        if self.per_batch > len(self.classes):
            raise ConfigError(
                f"A batch of {batch_size} with {samples_per_class} per class needs {self.per_batch} classes, "
                f"but the training split has only {len(self.classes)}; lower optim.batch_size."
            )
        self.index_of = {int(c): np.flatnonzero(self.labels == c) for c in self.classes}
        self.num_batches = max(len(self.labels) // batch_size, math.ceil(len(self.classes) / self.per_batch))

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        class_stream: deque[int] = deque()
        queues: dict[int, deque[int]] = {}

        def take(c: int) -> list[int]:
            out = []
            for _ in range(self.m):
                if not queues.get(c):
                    queues[c] = deque(rng.permutation(self.index_of[c]).tolist())
                out.append(queues[c].popleft())
            return out

        for _ in range(self.num_batches):
            batch_classes: list[int] = []
            deferred: list[int] = []
            while len(batch_classes) < self.per_batch:
                if not class_stream:
                    class_stream.extend(rng.permutation(self.classes).tolist())
                c = class_stream.popleft()
                # At a permutation boundary a class may come up twice; keep it for the next batch.
                (deferred if c in batch_classes else batch_classes).append(c)
            class_stream.extendleft(reversed(deferred))
            yield [i for c in batch_classes for i in take(c)]


class ClassRandomBatchSampler(_EpochBatchSampler):
    """The release's class_random sampler (see the module docstring): draws with replacement, N // B batches."""

    def __init__(self, labels, batch_size: int, samples_per_class: int, seed: int = 0):
        super().__init__(labels, batch_size, samples_per_class, seed)
        if len(self.labels) < batch_size:
            raise ConfigError(
                f"The release sampler makes N // B batches per epoch, but the training split has only "
                f"{len(self.labels)} images for a batch of {batch_size}; lower optim.batch_size."
            )
        # The images of class classes[j] are order[starts[j] : starts[j] + sizes[j]].
        self.order = np.argsort(self.labels, kind="stable")
        self.sizes = np.array([np.count_nonzero(self.labels == c) for c in self.classes], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.num_batches = len(self.labels) // batch_size

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.num_batches):
            draws = rng.integers(0, len(self.classes), size=self.per_batch)  # classes, with replacement
            picks = rng.integers(0, self.sizes[draws, None], size=(self.per_batch, self.m))  # images, too
            yield self.order[self.starts[draws, None] + picks].reshape(-1).tolist()


SAMPLERS: dict[str, type[Sampler[list[int]]]] = {
    "balanced": ClassBalancedBatchSampler,
    "release": ClassRandomBatchSampler,
}
"""``data.sampler`` name -> batch sampler class (labels, batch_size, samples_per_class, seed=); ``set_epoch``."""
