import math
from collections import Counter

import numpy as np
import pytest

from langdml_core.data.sampler import ClassBalancedBatchSampler


def make_labels(sizes):
    return np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])


@pytest.mark.parametrize(
    "sizes,batch,m", [([5] * 10, 8, 2), ([1, 2, 3, 9, 4, 7, 2, 6], 6, 3), ([30] * 3, 6, 2), ([2] * 50, 20, 2)]
)
def test_batches_are_m_per_class_and_cover_every_class(sizes, batch, m):
    labels = make_labels(sizes)
    sampler = ClassBalancedBatchSampler(labels, batch, m, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == max(len(labels) // batch, math.ceil(len(sizes) / (batch // m)))
    seen = set()
    for b in batches:
        assert len(b) == batch
        counts = Counter(labels[b].tolist())
        assert set(counts.values()) == {m} and len(counts) == batch // m  # distinct classes, m each
        seen |= set(counts)
    assert seen == set(range(len(sizes)))  # every class visited this epoch


def test_images_are_not_repeated_before_the_class_is_exhausted():
    labels = make_labels([4] * 6)
    sampler = ClassBalancedBatchSampler(labels, 4, 2, seed=0)
    per_class = {c: [] for c in range(6)}
    for b in sampler:
        for i in b:
            per_class[int(labels[i])].append(i)
    for c, drawn in per_class.items():
        first = drawn[:4]
        assert len(set(first)) == len(first), f"class {c} repeated an image early: {drawn}"


def test_deterministic_given_seed_and_epoch_and_different_across_epochs():
    labels = make_labels([7] * 12)
    a = ClassBalancedBatchSampler(labels, 8, 2, seed=1)
    b = ClassBalancedBatchSampler(labels, 8, 2, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(1)
    first = list(a)
    assert first == list(b)
    a.set_epoch(2)
    assert list(a) != first
    assert list(ClassBalancedBatchSampler(labels, 8, 2, seed=2)) != list(
        ClassBalancedBatchSampler(labels, 8, 2, seed=1)
    )


def test_too_few_classes_is_refused_clearly():
    with pytest.raises(ValueError, match="needs 5 classes"):
        ClassBalancedBatchSampler(make_labels([3] * 4), 10, 2)
