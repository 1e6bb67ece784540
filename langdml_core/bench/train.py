"""``langdml bench train``: training steps/s with the speed options on vs off, in one process.

"off" is fp32, contiguous tensors and pageable host-to-device copies; "channels_last" is fp32 with the model
and batches channels_last (what ``run.memory_format=auto`` does alone on the CPU); "on" is what
``run.precision=auto`` and ``run.memory_format=auto`` choose on a GPU: bf16 autocast of the forward,
channels_last model and batches, batches in pinned memory copied with ``non_blocking``; ``--compile`` adds
"on+compile" (torch.compile). Each mode has its own copy of one model (same initial weights) and the same fixed
batches; rounds are interleaved so machine noise hits all modes alike. The loss is a pure-torch normalised-softmax stand-in so
the bench runs where pytorch-metric-learning is not installed (the GPU image); its cost is negligible next to
the backbone. On CUDA it also reports the peak GPU memory of each mode (what one trial needs).
"""

from __future__ import annotations

import argparse
import copy
import time

from langdml_core.bench.timing import interleaved, medians, spreads, step_header


def bench_train(
    backbone: str = "resnet18",
    image_size: int = 64,
    batch_size: int = 32,
    steps: int = 3,
    repeats: int = 3,
    device: str = "cpu",
    compile: bool = False,
    seed: int = 0,
) -> dict:
    import torch
    import torch.nn.functional as F

    from langdml_core.backbones import build_model
    from langdml_core.config import TrialConfig
    from langdml_core.train import resolve_device, seed_everything, speed_options

    dev = resolve_device(device)
    seed_everything(seed)
    classes = max(2, batch_size // 2)
    base = {"model.backbone": backbone, "model.pretrained": False, "run.device": device}
    modes = {
        "off": {"run.precision": "fp32", "run.memory_format": "contiguous"},
        "channels_last": {"run.precision": "fp32", "run.memory_format": "channels_last"},
        "on": {"run.precision": "bf16", "run.memory_format": "channels_last"},
    }
    if compile:
        modes["on+compile"] = {**modes["on"], "run.compile": True}
    template = build_model(TrialConfig.from_dict(base).model)
    host_images = torch.randn(steps, batch_size, 3, image_size, image_size)
    host_labels = torch.arange(batch_size).div(2, rounding_mode="floor").remainder(classes).repeat(steps, 1)

    runs = {}
    for mode, options in modes.items():
        cfg = TrialConfig.from_dict({**base, **options})
        bf16, memory_format = speed_options(cfg, dev)
        model = copy.deepcopy(template).to(dev, memory_format=memory_format).train()
        proxies = torch.nn.Parameter(torch.randn(classes, cfg.model.embed_dim, device=dev))
        optimizer = torch.optim.Adam([*model.parameters(), proxies], lr=1e-5)
        pinned = mode.startswith("on") and dev.type == "cuda"
        images = [x.pin_memory() if pinned else x for x in host_images]
        labels = [y.pin_memory() if pinned else y for y in host_labels]
        forward = torch.compile(model) if cfg.run.compile else model
        runs[mode] = (forward, proxies, optimizer, images, labels, bf16, memory_format, pinned)

    def one_round(mode: str) -> float:
        forward, proxies, optimizer, images, labels, bf16, memory_format, pinned = runs[mode]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x, y in zip(images, labels, strict=True):
            x = x.to(dev, non_blocking=pinned, memory_format=memory_format)
            y = y.to(dev, non_blocking=pinned)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                embeddings = forward(x)
            logits = embeddings.float() @ F.normalize(proxies, dim=-1).T / 0.05
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        float(loss.detach())  # waits for the device
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / len(images)

    first_round, memory = {}, {}
    for mode in runs:  # warm-up (and compilation); peak memory per mode
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        first_round[mode] = one_round(mode)
        if dev.type == "cuda":
            memory[mode] = torch.cuda.max_memory_allocated() / 2**30
    times = interleaved({mode: lambda mode=mode: one_round(mode) for mode in runs}, repeats)
    median = medians(times)
    return {
        "setup": {
            "backbone": backbone,
            "image_size": image_size,
            "batch_size": batch_size,
            "steps": steps,
            "repeats": repeats,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
        },
        "step_seconds": median,
        "spread": spreads(times),
        "images_per_second": {mode: batch_size / t for mode, t in median.items()},
        "first_round_seconds": first_round,
        "gpu_memory_gib": memory,
        "ratio": {mode: median["off"] / median[mode] for mode in runs if mode != "off"},
    }


def format_report(result: dict) -> str:
    s = result["setup"]
    lines = [step_header(s)]
    for mode, t in result["step_seconds"].items():
        lo, hi = result["spread"][mode]
        memory = result["gpu_memory_gib"].get(mode)
        lines.append(
            f"  {mode:13s} {t * 1000:8.1f} ms/step  {1 / t:6.2f} steps/s  {result['images_per_second'][mode]:7.1f} "
            f"images/s  (spread {lo * 1000:.1f}-{hi * 1000:.1f})"
            + (f"  peak GPU memory {memory:.2f} GiB" if memory is not None else "")
        )
    for mode, ratio in result["ratio"].items():
        lines.append(f"  speed-up {mode} vs off: {ratio:.2f}x steps/s")
    return "\n".join(lines)


def add_train_parser(which) -> None:
    p = which.add_parser(
        "train",
        help="training steps/s with bf16 + channels_last + pinned copies on vs off",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--backbone", default="resnet18", help="timm model name (random weights; default resnet18)"
    )
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="steps per round (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.set_defaults(func=_run)


def _run(a: argparse.Namespace) -> int:
    result = bench_train(
        a.backbone, a.image_size, a.batch_size, a.steps, a.repeats, a.device, compile=a.compile
    )
    print(format_report(result))
    return 0
