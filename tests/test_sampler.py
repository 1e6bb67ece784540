import itertools
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from langdml_core.config import CHOICES
from langdml_core.data.sampler import SAMPLERS, ClassBalancedBatchSampler, ClassRandomBatchSampler


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


# ---- the release's class_random sampler (data.sampler=release) -----------------------------------------


def test_every_sampler_choice_has_a_sampler():
    assert tuple(SAMPLERS) == CHOICES["data.sampler"]
    assert (
        SAMPLERS["balanced"] is ClassBalancedBatchSampler and SAMPLERS["release"] is ClassRandomBatchSampler
    )


@pytest.mark.parametrize(
    "sizes,batch,m", [([5] * 10, 8, 2), ([1, 2, 3, 9, 4, 7, 2, 6], 6, 3), ([2] * 50, 20, 2)]
)
def test_release_epoch_is_n_over_b_batches_of_m_per_draw(sizes, batch, m):
    labels = make_labels(sizes)
    sampler = ClassRandomBatchSampler(labels, batch, m, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(labels) // batch  # floor(N / B), nothing else
    for b in batches:
        assert len(b) == batch and all(0 <= i < len(labels) for i in b)
        draws = [b[j : j + m] for j in range(0, batch, m)]  # m images of one class per draw
        assert all(len(set(labels[d].tolist())) == 1 for d in draws)


def no_class_repeat(classes: int, draws: int) -> Fraction:
    """P(the `draws` uniform class draws with replacement are all different) = prod_{i<k} (1 - i/C)."""
    return math.prod((Fraction(1) - Fraction(i, classes) for i in range(draws)), start=Fraction(1))


def no_image_repeat(sizes: list[int], draws: int, m: int) -> Fraction:
    """P(no image twice in a batch): over the C^k equally likely class sequences, a class drawn d times
    contributes t = m d uniform picks with replacement from its n images, all distinct with probability
    n (n-1) ... (n-t+1) / n^t (0 when t > n)."""
    total = Fraction(0)
    for sequence in itertools.product(range(len(sizes)), repeat=draws):
        p = Fraction(1)
        for c, d in Counter(sequence).items():
            t, n = m * d, sizes[c]
            p *= Fraction(math.perm(n, t), n**t) if t <= n else 0
        total += p
    return total / len(sizes) ** draws


def test_release_repeat_rates_match_the_closed_form():
    sizes, batch, m = [1, 2, 3, 4, 5, 6], 6, 2  # C = 6 classes, k = 3 draws of 2 images
    labels = make_labels(sizes)
    k = batch // m
    sampler = ClassRandomBatchSampler(labels, batch, m, seed=11)
    class_repeats = image_repeats = n = 0
    for epoch in range(2000):  # 3 batches per epoch: 6000 batches
        sampler.set_epoch(epoch)
        for b in sampler:
            n += 1
            class_repeats += len(set(labels[b[::m]].tolist())) < k
            image_repeats += len(set(b)) < len(b)
    p_class = 1 - no_class_repeat(len(sizes), k)
    p_image = 1 - no_image_repeat(sizes, k, m)
    assert p_class == 1 - Fraction(5, 6) * Fraction(4, 6)  # 4/9, the formula written out
    for hits, p in ((class_repeats, float(p_class)), (image_repeats, float(p_image))):
        band = 4.5 * math.sqrt(p * (1 - p) / n)  # binomial band, ~1e-5 two-sided
        assert abs(hits / n - p) < band, (hits / n, p, band)
    # the band separates the release from a sampler without replacement (never repeats a class)
    assert float(p_class) > 10 * 4.5 * math.sqrt(float(p_class) * (1 - float(p_class)) / n)


def test_release_deterministic_given_seed_and_epoch_and_different_across_epochs():
    labels = make_labels([7] * 12)
    a = ClassRandomBatchSampler(labels, 8, 2, seed=1)
    b = ClassRandomBatchSampler(labels, 8, 2, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(1)
    first = list(a)
    assert first == list(b) and first == list(a)  # iterating again replays the epoch
    a.set_epoch(2)
    assert list(a) != first
    assert list(ClassRandomBatchSampler(labels, 8, 2, seed=2)) != list(
        ClassRandomBatchSampler(labels, 8, 2, seed=1)
    )


def test_release_sampler_refuses_a_split_smaller_than_a_batch():
    with pytest.raises(ValueError, match="only 6 images for a batch of 8"):
        ClassRandomBatchSampler(make_labels([3, 3]), 8, 2)
