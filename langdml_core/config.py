"""The trial configuration: nested dataclasses, one place for every default.

Defaults are the paper's training recipe (Roth et al. 2022, release defaults) applied to the embedded
demo data and the packaged offline models, so ``langdml train`` runs on any laptop without downloads.
Paper setups change only what differs (see ``sweeps/``). ``TrialConfig.from_dict`` refuses unknown keys
and wrong types with one sentence naming the key and the closest valid one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from langdml_core.errors import ConfigError
from langdml_core.registry import suggest

# A field's allowed values are declared once, as its Literal type; CHOICES below is read from these types and
# the modules that act on a value import it from there.
Precision = Literal["fp32", "bf16", "auto"]
"""Autocast of a forward pass: fp32 (none), bf16, or auto (bf16 on CUDA, else fp32)."""


@dataclass
class DataConfig:
    name: str = "demo"
    """Dataset name from the dataset registry: demo, cub200, cars196, sop, folder."""
    root: str = ""
    """Dataset root directory; empty = $LANGDML_DATA_ROOT/<name> (unused by the generated demo dataset)."""
    image_size: int = 0
    """Training crop / evaluation centre-crop size in pixels; 0 = the dataset's default (224, demo 64)."""
    resize: int = 0
    """Evaluation resize (short side) before the centre crop; 0 = image_size * 256 / 224."""
    crop_scale: float = 0.08
    """Smallest area fraction of the training RandomResizedCrop, which draws from [crop_scale, 1] (release:
    torchvision's default 0.08)."""
    samples_per_class: int = 2
    """Images per class in each training batch (m in the m-per-class sampler)."""
    sampler: Literal["balanced", "release"] = "balanced"
    """Batch sampler: balanced (distinct classes, every class each epoch) or release (class_random: classes and images drawn with replacement, N // B batches)."""
    split: Literal["official", "release"] = "official"
    """Train/test classes: official (cars196: ids 1-98 train) or release (cars196: first 98 names in sorted() order; cub200, sop: = official)."""
    val_classes: int = 0
    """Number of training classes held out as a class-disjoint validation split (0 = none)."""
    val_fold: int = 0
    """Which data.val_classes classes are held out: fold k takes the k-th block of that many in one fixed
    permutation of the training classes (0 = the first block), so folds 0..K-1 are disjoint: class-disjoint
    cross-validation."""
    train_images_per_class: int = 0
    """Train on at most this many images of each training class, the first in the split's order (0 = all; the validation classes keep all theirs)."""
    test_images_per_class: int = 0
    """Evaluate on at most this many images of each test class, the first in the split's order (0 = all; quick checks)."""
    num_workers: int = 0
    """DataLoader worker processes (0 = load in the training process; -1 = from the trial's CPU share: 0 when the model runs on the CPU, else run.threads - 1, at least 1)."""
    check_counts: bool = True
    """Assert the official image/class counts; turn off only for small test fixtures."""
    layout: Literal["auto", "official", "folders"] = "auto"
    """Directory layout: auto, official or folders (one folder per class) for cub200 / cars196."""
    cache_images: bool = False
    """Read images from a node-wide cache of decoded, resized copies (built once; see langdml bench data)."""
    jpeg_draft: bool = False
    """Build that cache with JPEG draft-mode downscaling: faster for large sources, not bit-identical."""


@dataclass
class ModelConfig:
    backbone: str = "tf_efficientnet_lite0"
    """timm model name (paper: resnet50.tv_in1k; embedded default: the packaged EfficientNet-Lite0)."""
    pretrained: bool = True
    """Load ImageNet weights from local files; never falls back silently to random weights."""
    weights_file: str = ""
    """Local weights file (.safetensors/.pth/.bin) for the backbone; empty = packaged or cached weights."""
    embed_dim: int = 128
    """Embedding dimension (paper: 128; 512 in its best-results table)."""
    pool: Literal["avg", "max", "avgmax"] = "avg"
    """Global pooling of backbone features: avg, max, avgmax."""
    frozen_bn: bool = True
    """Keep BatchNorm layers in eval mode during training (paper default); affine weights still train."""
    frozen_stages: int = 0
    """Keep the backbone's first N parameter groups at their pretrained weights (timm's coarse groups: the stem, then one per stage; paper: 0)."""


@dataclass
class LossConfig:
    name: str = "multisimilarity"
    """DML loss from the loss registry (``langdml_core.losses.LOSSES``)."""
    kwargs: dict = field(default_factory=dict)
    """Overrides of the loss's own hyper-parameters, e.g. {alpha: 2, beta: 40} for multisimilarity."""
    lr: float = 0.0
    """Learning rate of loss-owned parameters (proxies, margin beta); 0 = the loss's own default."""


@dataclass
class LanguageConfig:
    guidance: Literal["none", "elg", "plg"] = "none"
    """Language guidance: none, elg (expert class names) or plg (ImageNet pseudo-label names)."""
    encoder: str = "minilm"
    """Language encoder name (registry); the embedded default is the packaged all-MiniLM-L6-v2."""
    encoder_path: str = ""
    """Local checkpoint file / model directory / vectors file of the encoder (empty = packaged or HF cache)."""
    pooling: Literal["auto", "pooler", "cls", "mean", "last"] = "auto"
    """Text pooling for transformers encoders: auto (the model's own, e.g. BERT pooler), pooler, cls, mean, last."""
    omega: float = 1.0
    """Weight of the language matching term in L = L_DML + omega * L_match."""
    temperature: float = 1.0
    """Softmax temperature T of the matching term."""
    shift: float = 1.0
    """Shift gamma added to the language similarities."""
    direction: Literal["img||lang", "lang||img"] = "img||lang"
    """KL direction: img||lang (paper equation, release default) or lang||img (classic distillation)."""
    topk: int = 5
    """PLG: ImageNet pseudo-labels per class."""
    prompt: str = "a photo of a {}"
    """Prompt template applied to every class text."""
    delay: int = 0
    """Iterations before the matching term switches on."""
    plg_classifier: str = "tf_efficientnet_lite0"
    """PLG: timm ImageNet classifier run once over the training split (release: ResNet-50)."""
    plg_weights_file: str = ""
    """PLG: local weights of that classifier (empty = packaged or cached weights)."""
    plg_average: Literal["logits", "softmax"] = "logits"
    """PLG: average logits (release) or softmax outputs (paper text) over a class's images."""
    plg_transform: Literal["classifier", "release"] = "classifier"
    """PLG preprocessing: classifier (its own timm eval transform) or release (Resize 256, zero-padded CenterCrop 299, ImageNet mean/std)."""
    mask_same_class: bool = True
    """Overwrite same-class entries in both similarity matrices (paper); False is an ablation."""
    shuffle_texts: bool = False
    """Control: randomly permute class texts so any gain must come from their meaning."""


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw"] = "adam"
    """Optimiser: adam or adamw."""
    lr: float = 1e-5
    """Learning rate of the backbone and embedding head (release: 1e-5)."""
    weight_decay: float = 4e-4
    """Weight decay of the backbone and head (loss-owned parameters get none)."""
    batch_size: int = 90
    """Training batch size (release: 90 for CUB multisimilarity, else 108/112)."""
    schedule: Literal["step", "cosine"] = "step"
    """Learning-rate schedule: step (x gamma at each of optim.milestones, once per epoch; without milestones
    constant, the release) or cosine (after optim.warmup_steps, from optim.lr down towards 0 by half a cosine
    over the run's remaining optimiser steps, updated after every step)."""
    milestones: list = field(default_factory=list)
    """Epochs at which the learning rate is multiplied by gamma (schedule step; release: constant)."""
    gamma: float = 1.0
    """Multiplicative learning-rate decay at each milestone."""
    warmup_steps: int = 0
    """Optimiser steps of linear warm-up to optim.lr before the cosine decay (schedule cosine): step t uses
    lr x (t + 1) / warmup_steps."""
    ema: float = 0.0
    """Decay of an exponential moving average of the network's weights (and BatchNorm statistics), updated
    after every step; when > 0 the average is what is evaluated, checkpointed beside the weights and logged
    (0 = off: the last iterate, the release)."""


@dataclass
class EvalConfig:
    every: int = 1
    """Evaluate on the test split every N epochs (the final epoch is always evaluated)."""
    ks: list = field(default_factory=lambda: [1, 2, 4, 8])
    """k values of Recall@k."""
    batch_size: int = 128
    """Batch size for embedding the evaluation splits."""
    precision: Precision = "fp32"
    """Autocast when embedding the evaluation splits: fp32 (the release), bf16, or auto (bf16 on CUDA, else fp32)."""
    nmi_clusters: Literal["test", "train"] = "test"
    """k of the NMI k-means: test (the evaluated split's number of classes) or train (number of training classes, the release)."""


@dataclass
class RunConfig:
    epochs: int = 100
    """Training epochs (release README example: 100)."""
    seed: int = 0
    """Seed of every random number generator (sampler, augmentation, initialisation) that no stream seed below overrides."""
    init_seed: int | None = None
    """Seed of what is drawn once before training: a random-init backbone, the embedding head, the loss's parameters, the shuffled-text control (null = run.seed)."""
    order_seed: int | None = None
    """Seed of the batch sampler: which images make up each batch, in which order (null = run.seed)."""
    augment_seed: int | None = None
    """Seed of the draws during training: augmentation, dropout (null = they go on from the init stream's state after its draws, as in every run before the stream seeds)."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda[:N]."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    out_dir: str = ""
    """Output directory for config.json, metrics.json and checkpoints (empty = runs/<timestamp>)."""
    progress: bool = True
    """Show a progress bar for local runs (only when stderr is a terminal)."""
    max_steps_per_epoch: int = 0
    """Cap on training steps per epoch for smoke tests (0 = a full epoch)."""
    precision: Precision = "fp32"
    """Autocast of the training forward: fp32 (the release; bf16's parity not yet shown on a GPU), bf16, or auto (bf16 on CUDA); losses stay fp32."""
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    """Model and batch layout: auto (channels_last: measured faster on CUDA and on the CPU), channels_last, contiguous."""
    compile: bool = False
    """torch.compile the training forward (the first steps compile; pays off only for long GPU runs)."""


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "language": LanguageConfig,
    "optim": OptimConfig,
    "eval": EvalConfig,
    "run": RunConfig,
}

CHOICES: dict[str, tuple[str, ...]] = {
    f"{section}.{key}": typing.get_args(hint)
    for section, cls in SECTIONS.items()
    for key, hint in typing.get_type_hints(cls).items()
    if typing.get_origin(hint) is Literal
}
"""Dotted key -> allowed values of every field with a Literal type (``validate`` checks them)."""


@dataclass
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None = None) -> TrialConfig:
        """Build from a nested or dotted dict; unknown keys and wrong types raise ConfigError."""
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(
                f"A config must be a mapping of keys to values, got {type(raw).__name__}: {raw!r}."
            )
        nested = _nest(raw or {})
        sections = {}
        for name, values in nested.items():
            if name not in SECTIONS:
                raise ConfigError(
                    f"Unknown config section {name!r}{suggest(name, list(SECTIONS))}; "
                    f"expected one of: {', '.join(SECTIONS)}."
                )
            if not isinstance(values, dict):
                raise ConfigError(f"Config section {name!r} must be a mapping of keys, got {values!r}.")
            sections[name] = _build_section(name, SECTIONS[name], values)
        config = cls(**sections)
        config.validate()
        return config

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> TrialConfig:
        """Read a JSON/YAML file (optional) and apply ``dotted.key=value`` overrides."""
        raw: dict[str, Any] = {}
        if path:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(
                    f"Config file {str(path)!r} does not exist; expected a .json or .yaml file."
                )
            text = path.read_text(errors="replace")
            try:
                raw = json.loads(text) if path.suffix == ".json" else (yaml.safe_load(text) or {})
            except (ValueError, yaml.YAMLError, RecursionError) as exc:
                first = " ".join(str(exc).split())[:200]
                raise ConfigError(
                    f"Config file {str(path)!r} is not valid {path.suffix[1:] or 'YAML'}: {first}."
                ) from None
            if not isinstance(raw, dict):
                raise ConfigError(f"Config file {str(path)!r} must hold a mapping, got {type(raw).__name__}.")
        return cls.from_dict({**flatten(_nest(raw)), **parse_overrides(overrides or [])})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values, e.g. {'loss.name': 'margin', ...}."""
        return flatten(self.to_dict())

    def validate(self) -> None:
        """Cross-field checks; each failure is one sentence naming the values."""
        for key, allowed in CHOICES.items():
            value = self.flat()[key]
            if value not in allowed:
                raise ConfigError(
                    f"{key}={value!r} is not valid{suggest(str(value), allowed)}; expected one of: {', '.join(allowed)}."
                )
        d, o = self.data, self.optim
        _positive("optim.batch_size", o.batch_size)
        _positive("data.samples_per_class", d.samples_per_class)
        if o.batch_size % d.samples_per_class:
            raise ConfigError(
                f"optim.batch_size={o.batch_size} is not divisible by data.samples_per_class={d.samples_per_class}; "
                "choose a batch size that is a multiple of it."
            )
        if o.batch_size // d.samples_per_class < 2:
            raise ConfigError(
                f"optim.batch_size={o.batch_size} with data.samples_per_class={d.samples_per_class} gives fewer "
                "than 2 classes per batch; DML losses need negatives from other classes."
            )
        for key in ("run.epochs", "model.embed_dim", "eval.every", "eval.batch_size"):
            _positive(key, self.flat()[key])
        for key in (
            "data.image_size",
            "data.resize",
            "data.val_classes",
            "data.val_fold",
            "data.train_images_per_class",
            "data.test_images_per_class",
            "model.frozen_stages",
            "run.threads",
            "run.max_steps_per_epoch",
            "language.delay",
            "language.topk",
        ):
            if self.flat()[key] < 0:
                raise ConfigError(f"{key}={self.flat()[key]} must be >= 0.")
        if not 0 < d.crop_scale <= 1:
            raise ConfigError(
                f"data.crop_scale={d.crop_scale} must lie in (0, 1]: the smallest fraction of the image's area "
                "that a training crop keeps (release: 0.08)."
            )
        if d.val_fold and not d.val_classes:
            raise ConfigError(
                f"data.val_fold={d.val_fold} needs a validation split: set data.val_classes > 0 as well."
            )
        if d.num_workers < -1:
            raise ConfigError(
                f"data.num_workers={d.num_workers} must be >= 0, or -1 for workers from the trial's CPU share."
            )
        if not self.eval.ks or not all(_is_int(k) and k >= 1 for k in self.eval.ks):
            raise ConfigError(f"eval.ks={self.eval.ks!r} must be a non-empty list of positive integers.")
        if not all(_is_int(m) and m >= 1 for m in o.milestones):
            raise ConfigError(f"optim.milestones={o.milestones!r} must be a list of positive epoch numbers.")
        if o.gamma <= 0:
            raise ConfigError(f"optim.gamma={o.gamma} must be > 0.")
        if o.schedule == "cosine" and o.milestones:
            raise ConfigError(
                f"optim.milestones={o.milestones!r} belong to optim.schedule=step; the cosine schedule decays "
                "after every step (set optim.milestones=[])."
            )
        if o.warmup_steps < 0 or (o.warmup_steps and o.schedule != "cosine"):
            raise ConfigError(
                f"optim.warmup_steps={o.warmup_steps} must be >= 0, and 0 unless optim.schedule=cosine "
                f"(it is {o.schedule})."
            )
        if not 0 <= o.ema < 1:
            raise ConfigError(f"optim.ema={o.ema} must lie in [0, 1) (0 = off; e.g. 0.9 averages ~10 steps).")
        flat = self.flat()
        for key in ("run.seed", "run.init_seed", "run.order_seed", "run.augment_seed"):
            value = flat[key]
            if value is not None and not 0 <= value < 2**32:
                raise ConfigError(f"{key}={value} must lie in 0..2**32-1 (numpy's seed range).")
        for name, value in self.loss.kwargs.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(
                    f"loss.kwargs key {name!r} must be a loss hyper-parameter name, e.g. alpha."
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"loss.kwargs.{name}={value} must be a finite number.")
        if o.lr <= 0 or self.loss.lr < 0 or o.weight_decay < 0:
            raise ConfigError(f"optim.lr={o.lr} must be > 0 and optim.weight_decay / loss.lr must be >= 0.")
        if self.language.temperature <= 0:
            raise ConfigError(f"language.temperature={self.language.temperature} must be > 0.")
        try:
            prompt_ok = "\x00" in self.language.prompt.format("\x00")  # the class text lands in it
        except (IndexError, KeyError, ValueError):
            prompt_ok = False
        if not prompt_ok:
            raise ConfigError(
                f"language.prompt={self.language.prompt!r} must contain '{{}}' where the class text goes "
                "and no other replacement fields (write {{ and }} for literal braces)."
            )
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.run.device):
            raise ConfigError(f"run.device={self.run.device!r} is not valid; expected auto, cpu or cuda[:N].")


# ---- helpers ----------------------------------------------------------------------------------
def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["loss.name=margin", "run.epochs=2"]`` -> {"loss.name": "margin", "run.epochs": 2}."""
    parsed = {}
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"Override {item!r} is not of the form section.key=value.")
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Override {item!r} is not of the form section.key=value.")
        parsed[key.strip()] = parse_value(value)
    return parsed


def parse_value(text: str) -> Any:
    """Parse a command-line value as YAML (numbers, booleans, lists), falling back to the raw string."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: a date like 2001-13-01
        return text


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in nested.items():
        dotted = f"{prefix}{key}"
        # Only the section level is nested; dict-valued fields (loss.kwargs) stay whole.
        if isinstance(value, dict) and not prefix and key in SECTIONS:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _nest(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Accept {'loss': {'name': ..}}, {'loss.name': ..} or a mix; 'loss.kwargs.alpha' goes into kwargs."""
    nested: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"Config key {key!r} must be a string.")
        section, _, rest = key.partition(".")
        if not rest:
            if isinstance(value, dict):
                for sub_key, sub_value in value.items():
                    _put(nested, section, str(sub_key), sub_value)
            else:
                nested[section] = value
            continue
        _put(nested, section, rest, value)
    return nested


def _put(nested: dict[str, Any], section: str, rest: str, value: Any) -> None:
    target = nested.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"Config section {section!r} must be a mapping of keys, got {target!r}.")
    name, _, sub = rest.partition(".")
    if sub:  # dotted key inside a dict-valued field, e.g. loss.kwargs.alpha
        inner = target.setdefault(name, {})
        if not isinstance(inner, dict):
            raise ConfigError(f"{section}.{name} is not a mapping, so {section}.{rest} cannot be set.")
        inner[sub] = value
    else:
        target[name] = value


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"Unknown config key '{section}.{key}'"
                f"{suggest(f'{section}.{key}', [f'{section}.{k}' for k in fields])}; "
                f"valid keys in {section!r}: {', '.join(fields)}."
            )
        kwargs[key] = _coerce(f"{section}.{key}", hints[key], value)
    return cls(**kwargs)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if value is None:
            return None
    if typing.get_origin(hint) is Literal:  # the type of its values here; the values are checked in validate
        hint = type(typing.get_args(hint)[0])
    expected = typing.get_origin(hint) or hint
    if expected is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "1e-5" (no dot) as a string
            value = float(value)
        except (ValueError, OverflowError):
            pass
    if expected is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}.")
    if _contains_itself(value):
        raise ConfigError(f"{key} contains itself (a YAML alias such as &a [*a]); write its values out.")
    if expected is list and isinstance(value, tuple):
        return list(value)
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}.")
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}.")
    if not isinstance(value, expected):
        names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}
        raise ConfigError(f"{key} must be {names.get(expected, expected.__name__)}, got {value!r}.")
    return value


def _contains_itself(value: Any, inside: tuple[int, ...] = ()) -> bool:
    """A list, tuple or mapping that holds itself, at any depth (YAML anchors and aliases can build one)."""
    if not isinstance(value, (list, tuple, dict)):
        return False
    if id(value) in inside:
        return True
    items = value.values() if isinstance(value, dict) else value
    return any(_contains_itself(item, (*inside, id(value))) for item in items)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{key}={value} must be a positive integer.")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field (read from the source), for --help and docs."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)  # type: ignore[attr-defined]
    return docs
