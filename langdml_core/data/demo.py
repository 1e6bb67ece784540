"""The embedded demo dataset: rendered compositional objects ("red striped circle").

Why this dataset: it needs no download, is deterministic, and its class names carry meaning that
matches what the images show. A class is a (colour, pattern, shape) triple; two classes whose names
share words also share visual attributes, so language similarity of the names correlates with visual
similarity (``tests/test_demo_data.py`` measures it). Test classes are UNSEEN COMPOSITIONS of attribute
values that all occur in training (zero-shot, class-disjoint as in CUB/CARS/SOP), which is exactly the
situation where knowing that "orange" sits near "red" should help.

It is deliberately not trivial: colours are jittered and overlap at their borders (red/orange/pink,
blue/purple), patterns are drawn at random scale and angle, objects vary in size, position and
rotation, and every image has a cluttered background with a distractor shape. With the demo schedule
the baseline's test Recall@1 stays well below 1.0, so differences between methods can show.

Images are generated on first use (6,912 images: about 30 s on one core) and cached as one .npz under the
langdml cache.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from langdml_core.cache import atomic_write, cache_dir, locked
from langdml_core.data.base import DATASETS, DMLDataset, ImageSet, check_split
from langdml_core.data.base import check_counts as assert_counts

VERSION = 2
SIZE = 64  # stored image size; the default crop is 64 as well (see DEFAULT_IMAGE_SIZE)
RENDER = 128  # drawn at 2x, then downsampled (anti-aliasing)
IMAGES_PER_CLASS = 24  # every class: the first images of a training or of a test class
TRAIN_IMAGES_PER_CLASS = 48  # a training class: those 24 and 24 more (until 2026-12-07: 24)
TEST_IMAGES_PER_CLASS = 96  # a test class: those 24 and 72 more (test Recall@1 on 4,608 queries)

COLOURS = {  # mean RGB; neighbours are close on purpose
    "red": (205, 40, 40),
    "orange": (235, 125, 30),
    "yellow": (230, 210, 40),
    "green": (50, 160, 60),
    "blue": (45, 80, 200),
    "purple": (130, 50, 170),
}
PATTERNS = ("plain", "striped", "dotted", "checkered")
SHAPES = ("circle", "square", "triangle", "star")


def class_table() -> list[tuple[str, str, str]]:
    """All 96 (colour, pattern, shape) triples in a fixed order."""
    return list(itertools.product(COLOURS, PATTERNS, SHAPES))


def is_train_class(colour: str, pattern: str, shape: str) -> bool:
    """Half of the compositions; every single value and every pair of values occurs in both halves."""
    c, p, s = list(COLOURS).index(colour), PATTERNS.index(pattern), SHAPES.index(shape)
    return (c + p + s) % 2 == 0


def class_name(colour: str, pattern: str, shape: str) -> str:
    return f"{colour} {pattern} {shape}"


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [math.pi / 4 + k * math.pi / 2 for k in range(4)]
        return [(cx + r * math.cos(a + angle), cy + r * math.sin(a + angle)) for a in corners]
    if shape == "triangle":
        corners = [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        return [(cx + r * math.cos(a + angle), cy + r * math.sin(a + angle)) for a in corners]
    if shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5 + angle
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    raise ValueError(shape)


def _mask(shape: str, cx: float, cy: float, r: float, angle: float) -> Image.Image:
    mask = Image.new("L", (RENDER, RENDER), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon(_shape_polygon(shape, cx, cy, r, angle), fill=255)
    return mask


def _pattern(pattern: str, rng: np.random.Generator) -> np.ndarray:
    """A (RENDER, RENDER) float map in [0, 1]: 1 = object colour, 0 = the light secondary colour."""
    yy, xx = np.mgrid[0:RENDER, 0:RENDER].astype(np.float32)
    period = rng.uniform(12, 22)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    if pattern == "plain":
        return np.ones_like(xx)
    if pattern == "striped":
        return ((u // (period / 2)) % 2 == 0).astype(np.float32)
    if pattern == "checkered":
        return (((u // (period / 2)) + (v // (period / 2))) % 2 == 0).astype(np.float32)
    if pattern == "dotted":
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        return (du**2 + dv**2 > (period * 0.28) ** 2).astype(np.float32)
    raise ValueError(pattern)


def render(colour: str, pattern: str, shape: str, rng: np.random.Generator) -> np.ndarray:
    """One (SIZE, SIZE, 3) uint8 image of the given class with random nuisances."""
    # Cluttered background: low-frequency colour noise plus two small plain distractor shapes in
    # random demo colours (so colour alone does not give the class away).
    low = rng.uniform(50, 210, size=(5, 5, 3)).astype(np.uint8)
    canvas = np.asarray(Image.fromarray(low).resize((RENDER, RENDER), Image.BICUBIC), dtype=np.float32)
    for _ in range(2):
        tint = np.array(COLOURS[str(rng.choice(list(COLOURS)))], dtype=np.float32) + rng.normal(0, 20, 3)
        blob = _mask(
            str(rng.choice(SHAPES)),
            *rng.uniform(8, RENDER - 8, 2),
            rng.uniform(7, 15),
            rng.uniform(0, 2 * np.pi),
        )
        alpha = np.asarray(blob, dtype=np.float32)[..., None] / 255
        canvas = canvas * (1 - alpha) + tint * alpha

    # Object colour: jittered so that neighbouring colours (red/orange, blue/purple) overlap a little.
    base = np.array(COLOURS[colour], dtype=np.float32) + rng.normal(0, 26, 3)
    base = base * rng.uniform(0.65, 1.2)  # illumination
    secondary = base + rng.uniform(0.35, 0.75) * (255 - base)  # pattern contrast varies
    texture = _pattern(pattern, rng)[..., None]
    fill = texture * base + (1 - texture) * secondary

    r = rng.uniform(0.17, 0.34) * RENDER
    cx, cy = rng.uniform(r, RENDER - r, 2)
    mask = np.asarray(_mask(shape, cx, cy, r, rng.uniform(0, 2 * np.pi)), dtype=np.float32)[..., None] / 255
    canvas = canvas * (1 - mask) + fill * mask
    canvas += rng.normal(0, 10, canvas.shape)  # sensor noise
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
    return np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)


def generate(
    images_per_class: int = IMAGES_PER_CLASS,
    test_images_per_class: int = TEST_IMAGES_PER_CLASS,
    seed: int = 0,
    train_images_per_class: int | None = None,
) -> dict[str, np.ndarray]:
    """All images of all 96 classes; deterministic given the seed (one RNG stream per image).

    Every class gets ``images_per_class`` images (stream: the image's index in that block, as generator
    version 2 always drew them); then each test class gets ``test_images_per_class - images_per_class`` more
    and each training class ``train_images_per_class - images_per_class`` more (stream: 10,000 + k within its
    class; ``None``: as many as ``images_per_class``, none more). So a class's first images do not depend on
    how many more are drawn, and a larger split contains the smaller one in the same order.
    """
    classes = class_table()
    labels = np.repeat(np.arange(len(classes)), images_per_class)
    streams = [[seed, VERSION, int(c), i] for i, c in enumerate(labels)]
    blocks = [labels]
    for in_train, total in (
        (False, test_images_per_class),
        (True, train_images_per_class or images_per_class),
    ):
        ids = [c for c, triple in enumerate(classes) if is_train_class(*triple) == in_train]
        extra = max(0, total - images_per_class)
        streams += [[seed, VERSION, c, 10_000 + k] for c in ids for k in range(extra)]
        blocks.append(np.repeat(ids, extra))
    labels = np.concatenate(blocks).astype(np.int64)
    images = np.empty((len(labels), SIZE, SIZE, 3), dtype=np.uint8)
    for i, (c, stream) in enumerate(zip(labels, streams, strict=True)):
        images[i] = render(*classes[c], np.random.default_rng(stream))
    return {"images": images, "labels": labels}


def _load_or_generate() -> dict[str, np.ndarray]:
    counts = f"{IMAGES_PER_CLASS}_{TRAIN_IMAGES_PER_CLASS}_{TEST_IMAGES_PER_CLASS}"
    target = cache_dir("data") / f"demo_v{VERSION}_{counts}.npz"
    if not target.exists():
        with locked(target):
            if not target.exists():
                arrays = generate(train_images_per_class=TRAIN_IMAGES_PER_CLASS)
                atomic_write(target, lambda tmp: np.savez(open(tmp, "wb"), **arrays))
    with np.load(target) as data:
        return {k: data[k] for k in data.files}


@DATASETS.register("demo")
def build_demo(
    root: Path | str = "", *, layout: str = "auto", check_counts: bool = True, split: str = "official"
) -> DMLDataset:
    check_split("demo", split, ("official",))  # generated data: only its own split
    arrays = _load_or_generate()
    classes = class_table()
    all_set = ImageSet(
        "all",
        arrays["labels"],
        [class_name(*c) for c in classes],
        list(range(len(classes))),
        images=arrays["images"],
    )
    train_ids = [i for i, c in enumerate(classes) if is_train_class(*c)]
    test_ids = [i for i, c in enumerate(classes) if not is_train_class(*c)]
    dataset = DMLDataset(
        name="demo",
        train=all_set.subset_classes(train_ids, "train"),
        test=all_set.subset_classes(test_ids, "test"),
        default_image_size=SIZE,
        info={
            "generator_version": VERSION,
            "images_per_class": IMAGES_PER_CLASS,
            "train_images_per_class": TRAIN_IMAGES_PER_CLASS,
            "test_images_per_class": TEST_IMAGES_PER_CLASS,
        },
    )
    if check_counts:
        found = {
            "train_classes": dataset.train.num_classes,
            "test_classes": dataset.test.num_classes,
            "train_images": len(dataset.train),
            "test_images": len(dataset.test),
        }
        expected = {
            "train_classes": 48,
            "test_classes": 48,
            "train_images": 48 * TRAIN_IMAGES_PER_CLASS,
            "test_images": 48 * TEST_IMAGES_PER_CLASS,
        }
        assert_counts("demo", Path("<generated>"), found, expected)
    return dataset
