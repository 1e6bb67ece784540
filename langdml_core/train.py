"""``train_trial(config)``: one training run, top to bottom in the order things happen.

Runs alone (``langdml train``) or as a Ray Tune function trainable. Seeds everything, builds data,
model and loss, resumes from the newest checkpoint in the output directory, trains with a class-balanced
sampler, evaluates Recall@k on the test split (and the validation split when one is carved), writes
``metrics.json`` and a checkpoint after every epoch, and at the end the test embeddings (``test_embeddings.npz``)
and a retrieval-examples image (``retrieval_examples.jpg``).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from langdml_core import checkpoint, rundir
from langdml_core.backbones import build_model
from langdml_core.config import TrialConfig
from langdml_core.data import build_dataset, eval_loader, loader_images, loader_workers, train_loader
from langdml_core.data.sampler import SAMPLERS
from langdml_core.data.transforms import eval_resize, eval_transform, train_transform
from langdml_core.errors import ConfigError, NonFiniteLossError
from langdml_core.evaluate import EMBEDDINGS_FILE, embed, nmi_clusters_k, retrieval_metrics, save_embeddings
from langdml_core.evaluate.examples import EXAMPLES_FILE, write_retrieval_examples
from langdml_core.language.guidance import LanguageGuidance
from langdml_core.language.tables import build_table, write_pseudo_labels
from langdml_core.losses import build_loss

EpochCallback = Callable[[dict[str, Any], dict[str, Any]], None]
"""Called after each epoch with (metrics row, checkpoint state); Ray reporting plugs in here."""


def train_trial(
    config: TrialConfig | dict,
    on_epoch_end: EpochCallback | None = None,
    resume_state: dict[str, Any] | None = None,
    extra_state: dict[str, Any] | None = None,
    restart: bool = False,
    label: str = "",
    local_checkpoints: bool = True,
) -> dict[str, Any]:
    """Train one trial in ``run.out_dir``, resuming the run there unless ``restart``; the directory is
    locked meanwhile and a stored run with another configuration is refused (``langdml_core.rundir``).
    ``label`` (a sweep's trial name) starts every line the trial prints: Ray interleaves its workers' lines.
    ``local_checkpoints=False``: no checkpoint files of its own in ``run.out_dir`` (under Tune, whose
    checkpoints, made in ``on_epoch_end``, are the trial's one checkpoint home)."""
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    out_dir = Path(cfg.run.out_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}").absolute()
    with rundir.claim(out_dir, cfg, restart=restart):
        return run(cfg, out_dir, on_epoch_end, resume_state, extra_state, label, local_checkpoints)


def run(
    cfg: TrialConfig,
    out_dir: Path,
    on_epoch_end: EpochCallback | None,
    resume_state: dict[str, Any] | None,
    extra_state: dict[str, Any] | None,
    label: str = "",
    local_checkpoints: bool = True,
) -> dict[str, Any]:
    """The trial itself, top to bottom; ``train_trial`` holds its directory."""

    def say(line: str) -> None:
        print(f"[{label}] {line}" if label else line, flush=True)

    # ---- a finished run is not run again ----------------------------------------------------------
    state = checkpoint.newest(resume_state, out_dir)
    if state is not None and int(state["epoch"]) >= cfg.run.epochs:
        say(f"Already trained {state['epoch']} of {cfg.run.epochs} epochs ({out_dir}); nothing to run.")
        return write_metrics(out_dir, state["history"], only_if_changed=True)

    # ---- determinism and device --------------------------------------------------------------
    # Three random streams (run.init_seed, run.order_seed, run.augment_seed; each run.seed when unset), so that
    # a sweep can vary one source of seed-to-seed variance at a time.
    init_seed, order_seed = (
        cfg.run.seed if s is None else s for s in (cfg.run.init_seed, cfg.run.order_seed)
    )
    seed_everything(init_seed)  # random-init backbones draw from here
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = resolve_device(cfg.run.device)
    bf16, memory_format = speed_options(cfg, device)

    # ---- data, model, loss, optimiser ----------------------------------------------------------
    dataset = build_dataset(cfg.data)
    check_fits(cfg, dataset)  # before any model is built
    write_dataset_record(out_dir / DATASET_FILE, dataset, cfg.data.root)
    image_size = cfg.data.image_size or dataset.default_image_size
    model = build_model(cfg.model).to(device, memory_format=memory_format)
    forward = torch.compile(model) if cfg.run.compile else model  # checkpoints keep the plain module's keys
    norm = model.data_config

    workers = loader_workers(cfg.data.num_workers, torch.get_num_threads(), str(device))
    if cfg.data.num_workers != workers:
        say(
            f"data.num_workers={cfg.data.num_workers}: {workers} loader workers ({torch.get_num_threads()} threads, {device})"
        )

    def images_of(split):  # the decoded-image cache (data.cache_images) or the original files
        size = eval_resize(image_size, cfg.data.resize)
        return loader_images(split, cfg.data, dataset.name, size, norm["interpolation"], workers)

    loader = train_loader(
        images_of(dataset.train),
        train_transform(
            image_size,
            norm["mean"],
            norm["std"],
            norm["interpolation"],
            cfg.data.cache_images,
            cfg.data.crop_scale,
        ),
        batch_size=cfg.optim.batch_size,
        samples_per_class=cfg.data.samples_per_class,
        seed=order_seed,
        num_workers=workers,
        sampler=cfg.data.sampler,
    )
    to_eval = eval_transform(image_size, norm["mean"], norm["std"], norm["interpolation"], cfg.data.resize)
    eval_splits = {"test": dataset.test, **({"val": dataset.val} if dataset.val is not None else {})}
    eval_loaders = {
        name: eval_loader(images_of(split), to_eval, batch_size=cfg.eval.batch_size, num_workers=workers)
        for name, split in eval_splits.items()
    }
    guidance = build_guidance(cfg, dataset.train, device, out_dir, seed=init_seed)

    # Frozen work above (weight conversion, language tables, PLG pseudo-labels) may or may not have run,
    # depending on what the cache held: start every random draw of training from the seed again, so the
    # trainable head, loss parameters, augmentation and sampling do not depend on the cache's state.
    seed_everything(init_seed)
    model.head.reset_parameters()
    criterion = build_loss(
        cfg.loss.name,
        dataset.train.num_classes,
        cfg.model.embed_dim,
        cfg.loss.kwargs,
        feature_dim=model.backbone.num_features,
    ).to(device)
    if cfg.run.augment_seed is not None:  # else augmentation and dropout go on from the init stream
        seed_everything(cfg.run.augment_seed)
    optimizer = build_optimizer(cfg, model, criterion)
    steps_per_epoch = (
        len(loader) if not cfg.run.max_steps_per_epoch else min(len(loader), cfg.run.max_steps_per_epoch)
    )
    scheduler, per_step = build_scheduler(cfg, optimizer, cfg.run.epochs * steps_per_epoch)
    average = weight_average(model, cfg.optim.ema)  # None when optim.ema is 0
    evaluated = average.module if average is not None else model

    # ---- resume ---------------------------------------------------------------------------------
    history: list[dict[str, Any]] = []
    start_epoch = 1
    if state is not None:
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if average is not None:
            average.module.load_state_dict(state["ema"])
            average.n_averaged.fill_(int(state["ema_steps"]))
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
        say(f"Resuming from epoch {state['epoch']} ({out_dir})")

    # ---- loop -----------------------------------------------------------------------------------
    for epoch in range(start_epoch, cfg.run.epochs + 1):
        started = time.perf_counter()
        model.train()
        loader.batch_sampler.set_epoch(epoch)
        sums: dict[str, float] = defaultdict(float)
        last_finite: dict[str, float] = {}
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{cfg.run.epochs}",
            disable=not (cfg.run.progress and sys.stderr.isatty()),
            leave=False,
            dynamic_ncols=True,
        )
        for step, (images, labels) in enumerate(loader, start=1):
            images = images.to(device, non_blocking=True, memory_format=memory_format)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                embeddings, features = forward(images, return_features=True)
            embeddings, features = embeddings.float(), features.float()  # losses in fp32
            global_step = (epoch - 1) * steps_per_epoch + step - 1
            terms = loss_terms(criterion, guidance, embeddings, labels, global_step, features)
            loss = sum(terms.values())
            values = {name: float(value.detach()) for name, value in terms.items()}
            if not math.isfinite(float(loss.detach())) or not torch.isfinite(embeddings.detach()).all():
                raise NonFiniteLossError(
                    f"Non-finite loss at epoch {epoch}, step {step}: {values}; last finite values: {last_finite}."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_step:  # optim.schedule=cosine
                scheduler.step()
            if average is not None:
                average.update_parameters(model)
            last_finite = values
            for name, value in values.items():
                sums[name] += value
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})
            if step >= steps_per_epoch:
                break
        bar.close()
        if not per_step:  # optim.schedule=step: milestones are epochs
            scheduler.step()

        row: dict[str, Any] = {"epoch": epoch, **{f"train/{k}": v / steps_per_epoch for k, v in sums.items()}}
        row["train/seconds"] = time.perf_counter() - started
        if epoch % cfg.eval.every == 0 or epoch == cfg.run.epochs:
            eval_started = time.perf_counter()
            for split, split_loader in eval_loaders.items():
                emb, lab = embed(evaluated, split_loader, device, precision=cfg.eval.precision)
                if split == "test" and epoch == cfg.run.epochs:  # kept for later analysis, and logged by Tune
                    save_embeddings(out_dir / EMBEDDINGS_FILE, emb, lab, dataset.test.class_texts)
                    write_retrieval_examples(out_dir / EXAMPLES_FILE, emb, lab, dataset.test)
                k = nmi_clusters_k(cfg.eval.nmi_clusters, dataset.train.num_classes, len(lab))
                for key, value in retrieval_metrics(emb, lab, ks=cfg.eval.ks, nmi_k=k).items():
                    row[f"{split}/{key}"] = value
            row["time/eval_seconds"] = time.perf_counter() - eval_started
        history.append(row)
        say(format_row(row))

        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "loss": criterion.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": history,
            "extra": dict(extra_state or {}),  # e.g. the MLflow run id of a Tune trial
        }
        if average is not None:  # the weights evaluated, beside those trained on
            state.update(ema=evaluated.state_dict(), ema_steps=int(average.n_averaged))
        if local_checkpoints:
            checkpoint.save(out_dir, epoch, state)
        if on_epoch_end is not None:  # under Tune: reports the epoch and stores its checkpoint
            on_epoch_end(row, state)
        write_metrics(out_dir, history)  # after the checkpoint: metrics.json never runs ahead of it
    return write_metrics(out_dir, history, only_if_changed=True)


# ---- helpers used above ---------------------------------------------------------------------------
def check_fits(cfg: TrialConfig, dataset) -> None:
    """Refuse, in one sentence, a batch the training split cannot fill or a Recall@k beyond a split's size."""
    SAMPLERS[cfg.data.sampler](dataset.train.labels, cfg.optim.batch_size, cfg.data.samples_per_class)
    splits = {"test": dataset.test, **({"val": dataset.val} if dataset.val is not None else {})}
    for name, split in splits.items():
        too_far = [k for k in cfg.eval.ks if k > len(split) - 1]
        if too_far:
            raise ConfigError(
                f"eval.ks={list(cfg.eval.ks)} asks for {too_far[0]} neighbours, but the {name} split has "
                f"{len(split)} images (at most {len(split) - 1} neighbours per query); use smaller k."
            )


def loss_terms(
    criterion, guidance, embeddings, labels, global_step: int, features=None
) -> dict[str, torch.Tensor]:
    """All named loss terms of one batch; the total loss is their sum."""
    terms = dict(criterion(embeddings, labels, features=features))
    if guidance is not None:
        terms.update(guidance(embeddings, labels, global_step))
    return terms


def build_guidance(
    cfg: TrialConfig, train, device: torch.device, out_dir: Path, *, seed: int
) -> LanguageGuidance | None:
    """The language matching term from cached class-text tables (None without guidance); ``seed`` draws the
    shuffled-text control's permutation."""
    lang = cfg.language
    if lang.guidance == "none":
        return None
    tables = build_table(lang, train, seed=seed, device=device)
    if tables.pseudo_labels:
        write_pseudo_labels(out_dir / "plg_pseudo_labels.csv", tables.pseudo_labels)
    return LanguageGuidance(
        tables.table,
        omega=lang.omega,
        temperature=lang.temperature,
        shift=lang.shift,
        direction=lang.direction,
        mask_same_class=lang.mask_same_class,
        delay=lang.delay,
    ).to(device)


def weight_average(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s parameters and buffers (BatchNorm statistics), taken by
    ``update_parameters`` after each step (the first update copies the weights), or None when ``decay`` is 0.
    Its ``module`` is what a trial with optim.ema > 0 evaluates."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def cosine_factor(step: int, warmup: int, total: int) -> float:
    """optim.schedule=cosine: the multiple of optim.lr used by optimiser step ``step`` (0-based) of ``total``:
    linear warm-up over the first ``warmup`` steps, then half a cosine from 1 towards 0 over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def step_schedule(cfg: TrialConfig, optimizer, total_steps: int):
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=cfg.optim.milestones, gamma=cfg.optim.gamma
    )


def cosine_schedule(cfg: TrialConfig, optimizer, total_steps: int):
    if cfg.optim.warmup_steps >= total_steps:
        raise ConfigError(
            f"optim.warmup_steps={cfg.optim.warmup_steps} leaves nothing to decay: this run has {total_steps} "
            "optimiser steps (run.epochs x steps per epoch); use fewer warm-up steps."
        )
    factor = partial(cosine_factor, warmup=cfg.optim.warmup_steps, total=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


SCHEDULES = {  # optim.schedule -> (builder, stepped after every optimiser step; else once per epoch)
    "step": (step_schedule, False),
    "cosine": (cosine_schedule, True),
}


def build_scheduler(cfg: TrialConfig, optimizer, total_steps: int):
    """(the learning-rate scheduler of optim.schedule, whether it steps after every optimiser step)."""
    build, per_step = SCHEDULES[cfg.optim.schedule]
    return build(cfg, optimizer, total_steps), per_step


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False


def speed_options(cfg: TrialConfig, device: torch.device) -> tuple[bool, torch.memory_format]:
    """(bf16 autocast on?, memory format of model and batches) from run.precision / run.memory_format."""
    cuda = device.type == "cuda"
    bf16 = cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and cuda)
    # auto: channels_last on CUDA and on the CPU alike (langdml bench train, fp32, 1 thread of a 2-core EPYC:
    # 1.89x steps/s for EfficientNet-Lite0 at 64 px, 1.12x ResNet-50 at 224 px, 1.06x ResNet-18 at 64 px)
    channels_last = cfg.run.memory_format in ("auto", "channels_last")
    return bf16, torch.channels_last if channels_last else torch.preserve_format


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={name!r} but no CUDA device is visible; use run.device=cpu or auto.")
    return torch.device(name)


def build_optimizer(cfg: TrialConfig, model: torch.nn.Module, criterion) -> torch.optim.Optimizer:
    """Backbone + head at optim.lr with weight decay; loss-owned parameters in their own groups."""
    groups = [
        {
            "params": [p for p in model.parameters() if p.requires_grad],
            "lr": cfg.optim.lr,
            "weight_decay": cfg.optim.weight_decay,
            "name": "model",
        }
    ]
    groups += criterion.param_groups(cfg.optim.lr, cfg.loss.lr)
    optimizer_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optim.name]
    return optimizer_cls(groups)


DATASET_FILE = "dataset.json"
"""What the trial trained and was tested on: per split its images, classes and digest (Tune trials log each
split to MLflow as a dataset input)."""


def write_dataset_record(path: Path, dataset, root: str) -> None:
    splits = {"train": dataset.train, "test": dataset.test, "val": dataset.val}
    record = {
        "name": dataset.name,
        "source": str(dataset.info.get("root") or root or "generated"),
        "default_image_size": dataset.default_image_size,
        "splits": {
            name: {"images": len(split), "classes": split.num_classes, "digest": split.digest()}
            for name, split in splits.items()
            if split is not None
        },
    }
    path.write_text(json.dumps(record, indent=2))


def write_metrics(
    out_dir: Path, history: list[dict[str, Any]], only_if_changed: bool = False
) -> dict[str, Any]:
    """metrics.json: the last evaluated epoch's metrics as ``final``, the time split, the per-epoch history.
    ``only_if_changed``: leave the file (and its mtime) alone when it already says exactly this."""
    evaluated = [row for row in history if any(k.startswith("test/") for k in row)]
    summary = {"final": evaluated[-1] if evaluated else {}, "timing": timing(history), "history": history}
    text = json.dumps(summary, indent=2)
    path = out_dir / "metrics.json"
    if not (only_if_changed and path.is_file() and path.read_text() == text):
        path.write_text(text)
    return json.loads(text)


def timing(history: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent training and evaluating over all epochs, and evaluation's share of the two."""
    train = sum(row.get("train/seconds", 0.0) for row in history)
    evaluation = sum(row.get("time/eval_seconds", 0.0) for row in history)
    total = train + evaluation
    return {
        "train_seconds": train,
        "eval_seconds": evaluation,
        "eval_share": evaluation / total if total else 0.0,
    }


def format_row(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}"]
    parts += [f"{k}={v:.4f}" for k, v in row.items() if k != "epoch" and isinstance(v, float)]
    return "  ".join(parts)
