"""``langdml bench guidance``: what language guidance costs per training step.

Times full training steps (forward, loss terms, backward, Adam) with guidance none / elg / plg on the same
model, the same fixed batches and in one process, interleaved so machine noise hits all modes alike, and
prints medians, spreads and the ratios to the plain step. Tables are built (or read from the cache)
before timing: their one-off cost is not part of a step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from langdml_core.bench.timing import interleaved, medians, spreads, step_header


def bench_guidance(
    steps: int = 4,
    repeats: int = 5,
    batch_size: int = 90,
    backbone: str = "tf_efficientnet_lite0",
    image_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    import torch

    from langdml_core.backbones import build_model
    from langdml_core.config import CHOICES, TrialConfig
    from langdml_core.data import build_dataset, train_loader
    from langdml_core.data.transforms import train_transform
    from langdml_core.losses import build_loss
    from langdml_core.train import build_guidance, build_optimizer, loss_terms, seed_everything

    dev = torch.device(device)
    seed_everything(seed)
    base = {
        "model.backbone": backbone,
        "optim.batch_size": batch_size,
        "data.image_size": image_size,
        "language.omega": 1.0,
    }
    configs = {
        mode: TrialConfig.from_dict({**base, "language.guidance": mode})
        for mode in CHOICES["language.guidance"]
    }
    cfg = configs["none"]
    dataset = build_dataset(cfg.data)
    model = build_model(cfg.model).to(dev)
    norm = model.data_config
    loader = train_loader(
        dataset.train,
        train_transform(image_size, norm["mean"], norm["std"]),
        batch_size=batch_size,
        samples_per_class=cfg.data.samples_per_class,
        seed=seed,
    )
    batches = [(x.to(dev), y.to(dev)) for _, (x, y) in zip(range(steps), loader, strict=False)]
    criterion = build_loss(
        cfg.loss.name, dataset.train.num_classes, cfg.model.embed_dim, feature_dim=model.backbone.num_features
    ).to(dev)
    optimizer = build_optimizer(cfg, model, criterion)
    out_dir = Path(tempfile.mkdtemp(prefix="langdml-bench-"))
    guidances = {
        mode: build_guidance(c, dataset.train, dev, out_dir, seed=c.run.seed) for mode, c in configs.items()
    }

    def one_round(guidance) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for step, (images, labels) in enumerate(batches):
            embeddings, features = model(images, return_features=True)
            loss = sum(loss_terms(criterion, guidance, embeddings, labels, step, features).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / len(batches)

    model.train()
    one_round(None)  # warm-up
    times = interleaved(
        {mode: lambda g=guidance: one_round(g) for mode, guidance in guidances.items()}, repeats
    )
    median = medians(times)
    return {
        "setup": {
            "backbone": backbone,
            "batch_size": batch_size,
            "image_size": image_size,
            "steps": steps,
            "repeats": repeats,
            "device": device,
            "threads": torch.get_num_threads(),
        },
        "step_seconds": median,
        "spread": spreads(times),
        "ratio": {mode: median[mode] / median["none"] for mode in ("elg", "plg")},
    }


def format_report(result: dict) -> str:
    s = result["setup"]
    lines = [step_header(s)]
    for mode, t in result["step_seconds"].items():
        lo, hi = result["spread"][mode]
        ratio = "" if mode == "none" else f"   ratio to none: {result['ratio'][mode]:.3f}x"
        lines.append(f"  {mode:5s} {t * 1000:8.1f} ms/step  (spread {lo * 1000:.1f}-{hi * 1000:.1f}){ratio}")
    return "\n".join(lines)


def add_guidance_parser(which) -> None:
    p = which.add_parser(
        "guidance",
        help="training-step cost of language guidance (none / elg / plg)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=90)
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.set_defaults(
        func=lambda a: (
            print(
                format_report(
                    bench_guidance(
                        a.steps, a.repeats, a.batch_size, a.backbone, a.image_size, device=a.device
                    )
                )
            )
            or 0
        )
    )
