"""``langdml bench data``: images/s per loader worker, original JPEGs vs the decoded-image cache.

Generates a fixture of CUB-sized JPEGs (500 x 375 by default, photo-like content, ~80 KB each),
builds the image cache for it, then times the per-sample work one loader worker does (decode, crop,
resize, tensor, normalise; one torch thread) for the training and the evaluation transform on the
originals and on the cache, in interleaved rounds within one process, and prints the ratios. It also
checks the outputs: evaluation tensors must be equal, training tensors differ by resampling only
(same random draws). Draft-mode JPEG decoding is timed against exact decoding for building the cache.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from langdml_core.bench.timing import interleaved, medians, spreads


def make_jpeg_folder(
    root: Path | str, classes: int = 8, per_class: int = 4, size=(500, 375), seed: int = 0, quality: int = 93
) -> Path:
    """A ``folder`` dataset of photo-like JPEGs: half the classes in train/, half in test/."""
    from PIL import Image, ImageDraw

    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    for c in range(classes):
        folder = root / ("train" if c < classes - classes // 2 else "test") / f"class_{c:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            # smooth colour field (upsampled coarse noise) + shapes + sensor-like noise
            coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
            image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
            draw = ImageDraw.Draw(image)
            for _ in range(6):
                x, y = rng.uniform(0, w), rng.uniform(0, h)
                r = rng.uniform(10, h / 3)
                draw.ellipse(
                    (x - r, y - r * rng.uniform(0.4, 1), x + r, y + r), fill=tuple(rng.integers(0, 255, 3))
                )
            pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 9, (h, w, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                folder / f"{k:04d}.jpg", quality=quality
            )
    return root


def _rate(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


RELEASE_BATCH = 108
"""The release's batch for CARS196, SOP and the CUB200 S2SD cells (paper.py; the CUB200 multisimilarity cells: 90)."""
GPU_RATE = (
    938,
    "NVIDIA's published ResNet-50 v1.5 training rate on one A100 80GB in TF32 (DeepLearningExamples, "
    "PyTorch/Classification/ConvNets/resnet50v1.5, pytorch-21.03): a public figure, not measured here",
)
"""Images/s one GPU trains at, when ``--gpu-rate`` is not given (``langdml bench train --device cuda`` measures it)."""


def loader_rates(
    dataset, batch_size: int, workers: list[int], batches: int, repeats: int, seed: int = 0
) -> dict[int, float]:
    """Median training images/s of a DataLoader over ``dataset`` for each number of worker processes
    (rounds interleaved): batches of ``batch_size`` random images, timed from the second batch on (the
    workers' start-up is paid once per trial, not per batch)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    def rate(count: int) -> float:
        sampler = RandomSampler(
            dataset,
            replacement=True,
            num_samples=batch_size * (batches + 1),
            generator=torch.Generator().manual_seed(seed),
        )
        loader = iter(DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=count))
        next(loader)
        start = time.perf_counter()
        seen = sum(len(labels) for _, labels in loader)
        return seen / (time.perf_counter() - start)

    return medians(interleaved({count: lambda count=count: rate(count) for count in workers}, repeats))


def bench_data(
    images: int = 256,
    size=(500, 375),
    image_size: int = 224,
    interpolation: str = "bilinear",
    repeats: int = 3,
    seed: int = 0,
    workdir: str | None = None,
    workers: list[int] | None = None,
    batch_size: int = RELEASE_BATCH,
    loader_batches: int = 12,
) -> dict:
    import torch

    from langdml_core.data import DATASETS, TransformedSet
    from langdml_core.data.image_cache import cached_images, decode
    from langdml_core.data.transforms import eval_resize, eval_transform, train_transform

    torch.set_num_threads(1)  # one loader worker = one process, one thread
    work = Path(workdir or tempfile.mkdtemp(prefix="langdml-bench-data-"))
    classes = 8
    make_jpeg_folder(work / "jpegs", classes, max(1, images * 2 // classes), size, seed)
    split = DATASETS.create("folder", work / "jpegs").train
    n = len(split)
    mean = std = (0.5, 0.5, 0.5)
    resize = eval_resize(image_size)

    start = time.perf_counter()
    cached = cached_images(split, "bench", resize, interpolation, folder=work / "cache")
    build_seconds = time.perf_counter() - start
    sets = {
        "train/jpeg": TransformedSet(split, train_transform(image_size, mean, std, interpolation)),
        "train/cache": TransformedSet(
            cached, train_transform(image_size, mean, std, interpolation, cached=True)
        ),
        "eval/jpeg": TransformedSet(split, eval_transform(image_size, mean, std, interpolation)),
        "eval/cache": TransformedSet(cached, eval_transform(image_size, mean, std, interpolation)),
    }
    work_per_image = {
        **{name: dataset.__getitem__ for name, dataset in sets.items()},
        "decode+resize/exact": lambda i: decode(split, i, resize, interpolation),
        "decode+resize/draft": lambda i: decode(split, i, resize, interpolation, draft=True),
    }
    for get in work_per_image.values():  # warm-up: page cache, allocator
        _rate(get, min(n, 16))
    rates = interleaved(
        {name: lambda get=get: _rate(get, n) for name, get in work_per_image.items()}, repeats
    )
    median = medians(rates)

    # whole loaders at the release's batch: images/s per number of worker processes
    workers = sorted(set(workers if workers is not None else range(0, (os.cpu_count() or 1) + 1)))
    loader = {
        source: loader_rates(sets[f"train/{source}"], batch_size, workers, loader_batches, repeats, seed)
        for source in ("jpeg", "cache")
    }

    # outputs: evaluation must be identical; training differs by resampling only (same random draws)
    eval_equal = sum(torch.equal(sets["eval/jpeg"][i][0], sets["eval/cache"][i][0]) for i in range(n))
    train_diff = []
    for i in range(min(n, 64)):
        torch.manual_seed(seed + i)
        a = sets["train/jpeg"][i][0]
        torch.manual_seed(seed + i)
        b = sets["train/cache"][i][0]
        train_diff.append(float((a - b).abs().mean()) * std[0] * 255)  # in 0..255 pixel units
    exact, source = decode(split, 0, resize, interpolation)
    drafted, _ = decode(split, 0, resize, interpolation, draft=True)
    draft_diff = np.abs(exact.astype(np.int16) - drafted.astype(np.int16))
    from PIL import Image

    with Image.open(split.paths[0]) as image:
        image.draft("RGB", (drafted.shape[1], drafted.shape[0]))
        draft_scale = source[0] / image.size[0]
    return {
        "setup": {
            "images": n,
            "source_size": list(source),
            "mean_jpeg_kb": sum(Path(p).stat().st_size for p in split.paths) / n / 1024,
            "image_size": image_size,
            "cache_short_side": resize,
            "interpolation": interpolation,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
        },
        "images_per_second": median,
        "loader": {"batch_size": batch_size, "batches": loader_batches, "cpus": os.cpu_count(), **loader},
        "spread": spreads(rates),
        "ratio": {
            "train": median["train/cache"] / median["train/jpeg"],
            "eval": median["eval/cache"] / median["eval/jpeg"],
            "draft": median["decode+resize/draft"] / median["decode+resize/exact"],
        },
        "cache_build_ms_per_image": build_seconds / n * 1000,
        "cache_mb_per_image": cached.offsets[-1] / n / 2**20,
        "eval_identical": f"{eval_equal}/{n}",
        "train_mean_abs_diff_255": {"mean": statistics.mean(train_diff), "max": max(train_diff)},
        "draft_abs_diff_255": {"mean": float(draft_diff.mean()), "max": int(draft_diff.max())},
        "draft_scale": draft_scale,
    }


def format_report(result: dict, gpu_rate: tuple[float, str] = GPU_RATE) -> str:
    s, r, ips = result["setup"], result["ratio"], result["images_per_second"]
    lines = [
        f"per loader worker ({s['threads']} thread), {s['images']} JPEGs {s['source_size'][0]}x{s['source_size'][1]} "
        f"(~{s['mean_jpeg_kb']:.0f} KB), crops {s['image_size']} px, cache short side {s['cache_short_side']}, "
        f"{s['interpolation']}; median of {s['repeats']} interleaved rounds",
    ]
    for name, value in ips.items():
        lo, hi = result["spread"][name]
        lines.append(f"  {name:22s} {value:8.0f} images/s  (spread {lo:.0f}-{hi:.0f})")
    diff, draft = result["train_mean_abs_diff_255"], result["draft_abs_diff_255"]
    lines += [
        f"  ratio cache / jpeg: train {r['train']:.2f}x, eval {r['eval']:.2f}x",
        f"  ratio draft / exact decode+resize: {r['draft']:.2f}x, JPEG decoded at 1/{result['draft_scale']:g} scale "
        f"(1/1: source short side < 2 x cache size); pixel diff mean {draft['mean']:.2f}, max {draft['max']} of 255",
        f"  eval tensors identical: {result['eval_identical']}; train tensors, same draws: mean |diff| "
        f"{diff['mean']:.2f} (worst image {diff['max']:.2f}) of 255",
        f"  cache: build {result['cache_build_ms_per_image']:.2f} ms/image once, "
        f"{result['cache_mb_per_image']:.3f} MB/image on disk",
    ]
    lines += loader_report(result, gpu_rate)
    return "\n".join(lines)


def per_worker_rate(result: dict, source: str) -> float:
    """One worker's training images/s from ``source``: the best whole-loader rate per worker over the measured
    counts >= 1 (one worker alone stalls on its queue; many share this box's cores with the main process),
    else the per-image work of one worker in the interleaved rounds."""
    rates = [rate / count for count, rate in result["loader"][source].items() if count >= 1]
    return max(rates) if rates else result["images_per_second"][f"train/{source}"]


def cpus_to_feed(gpu_rate: float, worker_rate: float) -> int:
    """CPUs a GPU trial needs: enough loader workers to decode ``gpu_rate`` images/s, plus one core for the
    training process that feeds the GPU (``data.num_workers=-1`` uses exactly cpus - 1 workers)."""
    return math.ceil(gpu_rate / worker_rate) + 1


def loader_report(result: dict, gpu_rate: tuple[float, str]) -> list[str]:
    loader = result["loader"]
    lines = [
        f"  DataLoader, train transform, batch {loader['batch_size']}, {loader['batches']} batches after the first, "
        f"median of {result['setup']['repeats']} interleaved rounds ({loader['cpus']} CPUs here): images/s per worker count"
    ]
    for source in ("jpeg", "cache"):
        rates = ", ".join(f"{w}: {r:.0f}" for w, r in loader[source].items())
        lines.append(f"    {source:6s} workers {rates}")
    rate, label = gpu_rate
    lines.append(f"  to feed {rate:g} images/s ({label}):")
    for source in ("jpeg", "cache"):
        r = per_worker_rate(result, source)
        lines.append(
            f"    from the {source:5s}: {cpus_to_feed(rate, r)} CPUs per trial (ceil({rate:g} / {r:.0f} per worker) "
            "workers + 1)"
        )
    return lines


def add_data_parser(which) -> None:
    p = which.add_parser(
        "data",
        help="images/s per loader worker: original JPEGs vs the decoded-image cache",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--images", type=int, default=256, help="fixture images (default 256)")
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--height", type=int, default=375)
    p.add_argument(
        "--image-size", type=int, default=224, help="crop size (cache short side = size * 256/224)"
    )
    p.add_argument("--interpolation", choices=("bilinear", "bicubic"), default="bilinear")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", help="where the fixture and its cache go (default: a new temp dir)")
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        help="loader worker counts to time (default: 0 to the number of CPUs)",
    )
    p.add_argument(
        "--batch-size", type=int, default=RELEASE_BATCH, help=f"loader batch (default {RELEASE_BATCH})"
    )
    p.add_argument(
        "--gpu-rate",
        type=float,
        help=f"images/s the GPU trains at, to size the CPUs per trial (default {GPU_RATE[0]}: "
        "a public A100 figure; langdml bench train --device cuda measures yours)",
    )
    p.set_defaults(func=_run)


def _run(a: argparse.Namespace) -> int:
    result = bench_data(
        a.images,
        (a.width, a.height),
        a.image_size,
        a.interpolation,
        a.repeats,
        workdir=a.workdir,
        workers=a.workers,
        batch_size=a.batch_size,
    )
    gpu_rate = GPU_RATE if a.gpu_rate is None else (a.gpu_rate, "--gpu-rate")
    print(format_report(result, gpu_rate))
    return 0
