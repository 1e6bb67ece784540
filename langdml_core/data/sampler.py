"""Class-balanced batch sampler: each batch holds B/m classes with m images each.

An epoch is defined by the data, not by a step count: it has max(N // B, ceil(C / (B/m))) batches
and visits every class at least once (classes are drawn from consecutive random permutations of all
classes, the next permutation starting only when the previous one is used up). Within a class, images
are drawn from a shuffled queue so that every image is seen before any repeats; classes with fewer than
m images repeat images inside a batch. Fully determined by (seed, epoch).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from torch.utils.data import Sampler


class ClassBalancedBatchSampler(Sampler[list[int]]):
    def __init__(self, labels, batch_size: int, samples_per_class: int, seed: int = 0):
        labels = np.asarray(labels, dtype=np.int64)
        if batch_size % samples_per_class:
            raise ValueError(
                f"batch_size={batch_size} is not a multiple of samples_per_class={samples_per_class}."
            )
        self.classes = np.unique(labels)
        self.per_batch = batch_size // samples_per_class
        if self.per_batch > len(self.classes):
            raise ValueError(
                f"A batch of {batch_size} with {samples_per_class} per class needs {self.per_batch} classes, "
                f"but the training split has only {len(self.classes)}; lower optim.batch_size."
            )
        self.labels = labels
        self.batch_size = batch_size
        self.m = samples_per_class
        self.seed = seed
        self.epoch = 0
        self.index_of = {int(c): np.flatnonzero(labels == c) for c in self.classes}
        self.num_batches = max(len(labels) // batch_size, math.ceil(len(self.classes) / self.per_batch))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

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
