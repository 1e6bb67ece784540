"""The paper's recipe, in one place: every value the paper sweeps set, each with its source.

Roth, Vinyals, Akata, CVPR 2022. The numbers of its tables came from the authors' public release (commit
b07ac5b): one shell command per cell in its benchmark script, plus the defaults of its code. They were read
from there and transcribed below; ``tests/test_paper_recipe.py`` checks the sweeps against the same facts
written out independently.

    recipe("cub200", 128, "s2sd", "plg")  ->  {"run.epochs": Sourced(300, "release benchmark script ..."), ...}

``recipe`` returns dotted config keys -> ``Sourced(value, source)``; sweep files return it from ``derive``
(or ``get_config``) and ``langdml_core.runner.sweep_file`` splits it into the trial's config and its
sources. Every source starts with its kind:

- ``release``: read from the release (the file is named);
- ``derived``: a cell the release did not run, filled by the rule the release implies (an ELG or no-guidance
  cell takes the epochs, batch and S2SD settings of its PLG cell, an ELG cell its omega too, a no-guidance
  cell omega 0, a margin cell the schedule of the multisimilarity cell of the same dataset and dim);
- ``stand-in``: not in the release at all (every SOP value, every margin omega): our documented choice, to be
  replaced by a tuned value (``sweeps/tune_omega.py``);
- ``langdml``: where we knowingly differ from the release (and why);
- ``cell``: what the recipe was asked for (dataset, dim, loss, guidance).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, NamedTuple

from langdml_core.config import CHOICES
from langdml_core.errors import ConfigError

SCRIPT = "release benchmark script (commit b07ac5b)"
README = "release README (commit b07ac5b)"
CODE = "release code (commit b07ac5b)"

DATASETS = ("cub200", "cars196", "sop")
LOSSES = ("multisimilarity", "margin", "s2sd")
GUIDANCE = CHOICES["language.guidance"]
DIMS = (128, 512)  # Table 1 is 128-d (most likely); the "best results" are 512-d
KINDS = ("stand-in", "derived", "release", "langdml", "cell")
"""What every source starts with (module docstring); a value built from several takes the first that applies."""


class Sourced(NamedTuple):
    value: Any
    source: str


# ---- the release's benchmark script: its PLG cells -------------------------------------------------------
# (dataset, dim, loss): (epochs, batch, omega, S2SD feat_w, seed in the script). Every command: Adam lr 1e-5,
# wd 4e-4, constant lr (tau = epochs, gamma 1), ResNet-50 with frozen BN; every S2SD command: feature
# distillation from iteration 0 (delay 0), pooled features avg + max (pool_aggr), no similarity distillation.
SCRIPT_CELLS = {
    ("cub200", 128, "multisimilarity"): (200, 90, 7.5, None, 2),
    ("cub200", 128, "s2sd"): (300, 108, 1.5, 125.0, 2),
    ("cub200", 512, "multisimilarity"): (150, 90, 10.0, None, 0),
    ("cub200", 512, "s2sd"): (250, 108, 2.0, 60.0, 0),
    ("cars196", 128, "multisimilarity"): (250, 108, 6.0, None, 1),
    ("cars196", 128, "s2sd"): (250, 108, 2.5, 50.0, 0),
    ("cars196", 512, "multisimilarity"): (250, 108, 5.5, None, 0),
    ("cars196", 512, "s2sd"): (300, 108, 2.0, 40.0, 0),
}

# ---- SOP: in no release command. Stand-ins, each with its reason -------------------------------------------
NOT_RELEASED = "stand-in: SOP is in no release command"
SOP = {
    "epochs": Sourced(100, f"{NOT_RELEASED}; 100 as in the example run of the {README}"),
    "batch": Sourced(
        108,
        f"{NOT_RELEASED}; 108 = the batch of every command of the {SCRIPT} but CUB200 multisimilarity's 90 "
        "(112, also named among the release's batch sizes, is used by none of its commands)",
    ),
    "omega": Sourced(
        0.5, f"{NOT_RELEASED}; the release's advice for SOP is omega roughly 0.1-1, to be tuned"
    ),
    "feat_w": Sourced(50.0, f"{NOT_RELEASED}; 50 = the CARS196 128-d S2SD value of the {SCRIPT}"),
    "delay": Sourced(0, f"{NOT_RELEASED}; 0 as in every S2SD command of the {SCRIPT}"),
    "pool_aggr": Sourced(True, f"{NOT_RELEASED}; on as in every S2SD command of the {SCRIPT}"),
}


@dataclass(frozen=True)
class Cell:
    """The values that differ per cell. S2SD fields are None for the other losses."""

    epochs: Sourced
    batch: Sourced
    omega: Sourced
    feat_w: Sourced | None = None
    delay: Sourced | None = None
    pool_aggr: Sourced | None = None


def plg_cell(dataset: str, embed_dim: int, loss: str) -> Cell:
    """The PLG cell of the release's script, or the one the rules derive for it (margin, SOP)."""
    _check(dataset, embed_dim, loss, "plg")
    name = f"{dataset}/{embed_dim}/{loss}"
    if loss == "margin":  # not in the release: the multisimilarity cell's schedule, its omega as a stand-in
        msim = plg_cell(dataset, embed_dim, "multisimilarity")
        rule = f"margin cell, as the multisimilarity cell {dataset}/{embed_dim}"
        return Cell(
            _follow(msim.epochs, rule),
            _follow(msim.batch, rule),
            Sourced(
                msim.omega.value, f"stand-in: no margin omega in the release, {rule} <- {msim.omega.source}"
            ),
        )
    if dataset == "sop":
        s2sd = loss == "s2sd"
        return Cell(
            SOP["epochs"],
            SOP["batch"],
            SOP["omega"],
            *(SOP[k] for k in ("feat_w", "delay", "pool_aggr") if s2sd),
        )
    epochs, batch, omega, feat_w, _seed = SCRIPT_CELLS[(dataset, embed_dim, loss)]
    src = f"{SCRIPT}, PLG cell {name}"
    s2sd = () if feat_w is None else (Sourced(feat_w, src), Sourced(0, src), Sourced(True, src))
    return Cell(Sourced(epochs, src), Sourced(batch, src), Sourced(omega, src), *s2sd)


def cell(dataset: str, embed_dim: int, loss: str, guidance: str) -> Cell:
    """The cell's values for any guidance: ELG and no-guidance cells follow their PLG cell."""
    _check(dataset, embed_dim, loss, guidance)
    plg = plg_cell(dataset, embed_dim, loss)
    if guidance == "plg":
        return plg
    what = "ELG" if guidance == "elg" else "no-guidance"
    rule = f"{what} cell, as its PLG cell"
    s2sd = [None if v is None else _follow(v, rule) for v in (plg.feat_w, plg.delay, plg.pool_aggr)]
    if guidance == "elg":
        omega = _follow(plg.omega, rule + " (expert names instead of pseudo-labels)")
    else:
        omega = Sourced(0.0, "derived: no guidance, so no matching term (omega 0)")
    return Cell(_follow(plg.epochs, rule), _follow(plg.batch, rule), omega, *s2sd)


# ---- values common to every cell -------------------------------------------------------------------------
EVERY = f"{SCRIPT}, every command"
COMMON = {
    "model.backbone": Sourced(
        "resnet50.tv_in1k",
        f"{EVERY}: ResNet-50 with torchvision's ImageNet weights (= timm resnet50.tv_in1k, not timm's default)",
    ),
    "model.pretrained": Sourced(True, f"{EVERY}: ImageNet-pretrained"),
    "model.frozen_bn": Sourced(True, f"{EVERY}: frozen BatchNorm (eval mode, affine weights trained)"),
    "model.pool": Sourced("avg", f"{CODE}: avg-pool -> Linear -> L2-normalise"),
    "optim.name": Sourced("adam", EVERY),
    "optim.lr": Sourced(1e-5, EVERY),
    "optim.weight_decay": Sourced(4e-4, EVERY),
    "optim.schedule": Sourced("step", f"{EVERY}: MultiStepLR, stepped once per epoch"),
    "optim.milestones": Sourced(
        [], f"{EVERY}: constant lr (tau = epochs; the commented schedules are unused)"
    ),
    "optim.gamma": Sourced(1.0, f"{EVERY}: gamma 1 (constant lr)"),
    "data.samples_per_class": Sourced(2, f"{EVERY}: 2 samples per class"),
    "data.crop_scale": Sourced(
        0.08, f"{CODE}: RandomResizedCrop(224) with torchvision's default scale (0.08, 1)"
    ),
    "data.sampler": Sourced("release", f"{CODE}: 'class_random', classes and images drawn with replacement"),
    "data.split": Sourced(
        "release",
        f"{CODE}: CARS196 class folders sorted by name, first half train (CUB200, SOP: official)",
    ),
    "data.cache_images": Sourced(
        True,
        "langdml: decoded-image cache (short side 256; the release decodes every JPEG): the same evaluation "
        "tensors, training crops resampled from the stored copy (mean |diff| < 3/255), ~4x images/s per worker",
    ),
    "data.num_workers": Sourced(
        -1,
        "langdml: loader workers from the trial's CPU share (run.threads - 1 on a GPU, 0 on the CPU): "
        "the same images per batch, crops drawn by the workers' own generators; langdml bench data sizes the share",
    ),
    "language.encoder": Sourced("clip-ViT-B-32", f"{CODE}: default language model CLIP ViT-B/32"),
    "language.prompt": Sourced("a photo of a {}", f"{CODE}: default prompt"),
    "language.direction": Sourced("img||lang", f"{CODE}: KL(P_img || P_lang), the paper's equation"),
    "language.temperature": Sourced(1.0, f"{CODE}: default T"),
    "language.shift": Sourced(1.0, f"{CODE}: default shift gamma"),
    "language.delay": Sourced(0, f"{CODE}: default, no delay"),
    "language.plg_classifier": Sourced(
        "resnet50.tv_in1k", f"{CODE}: ResNet-50 ImageNet (torchvision weights) pseudo-labeller"
    ),
    "language.plg_transform": Sourced(
        "release", f"{CODE}: Resize(256) then CenterCrop(299) (zero-pads), ImageNet mean/std"
    ),
    "language.plg_average": Sourced(
        "logits", f"{CODE}: logits averaged per class (the paper's text says softmax outputs)"
    ),
    "language.topk": Sourced(5, f"{EVERY}: top-5 pseudo-labels (Table 1's 'PLG top-5')"),
    "run.precision": Sourced("fp32", f"{EVERY}: its float16 flag is off"),
    "eval.precision": Sourced("fp32", f"{EVERY}: its float16 flag is off"),
    "eval.every": Sourced(1, f"{CODE}: the test split every epoch (for the best-epoch selection)"),
    "eval.nmi_clusters": Sourced(
        "test",
        "langdml: k-means with k = number of TEST classes (the release uses the training classes' number); "
        "equal for CUB200 (100/100) and CARS196 (98/98), 11,316 vs 11,318 on SOP; NMI is not in Table 1",
    ),
}

SELECTION = Sourced(
    "best test epoch per metric, then mean +- std over seeds",
    f"{CODE}: its tables take the maximum over epochs of the test curve (the report also shows "
    "the last epoch)",
)
"""How the paper's tables pick an epoch: not a config key, the report applies it."""

SEEDS = Sourced(
    [0, 1, 2],
    "stand-in: the paper reports mean +- std over seeds without their number; the script runs one seed per cell",
)


def loss_kwargs(loss: str, c: Cell) -> Sourced:
    """``loss.kwargs``: the release's formulation of each loss (and S2SD as the release runs it)."""
    if loss == "multisimilarity":
        return Sourced(
            {"formulation": "release"},
            f"{CODE}: its own multisimilarity (softplus of the means over anchors), not pml's",
        )
    if loss == "margin":
        return Sourced(
            {"formulation": "release", "count": "triplets"},
            f"{CODE}: distance-weighted mining without the 1.4 cut-off, one triplet per anchor; divided by the "
            "triplets with a non-zero term (criteria/margin.py's (pos_loss>0.)+(neg_loss>0.) is a bool OR)",
        )
    kwargs = {
        "base": "multisimilarity",
        "base_kwargs": {"formulation": "release"},
        "target_dims": [1024, 1536, 2048],
        "feat_distill_weight": c.feat_w.value,
        "feat_distill_delay": c.delay.value,
        "pool_aggr": c.pool_aggr.value,
        "sim_distill_weight": 0.0,
        "head_hidden": "target",
        "combine": "mean",
    }
    cell_sources = {"feat_distill_weight": c.feat_w, "feat_distill_delay": c.delay, "pool_aggr": c.pool_aggr}
    kind = next(k for k in KINDS if any(v.source.startswith(k) for v in cell_sources.values()))
    return Sourced(
        kwargs,
        f"{kind}: "
        + " | ".join(f"{key} <- {v.source}" for key, v in cell_sources.items())
        + f" | the rest <- {CODE}: its S2SD (release multisimilarity, heads Linear(F, t)-ReLU-Linear(t, t) to "
        "1024/1536/2048, similarity distillation weight 0, (L + mean L_t) / 2)",
    )


def recipe(dataset: str, embed_dim: int, loss: str, guidance: str) -> dict[str, Sourced]:
    """Dotted config key -> Sourced(value, source) for one cell of the paper's tables."""
    c = cell(dataset, embed_dim, loss, guidance)
    asked = f"cell: {dataset}/{embed_dim}/{loss}/{guidance}"
    return {
        "data.name": Sourced(dataset, asked),
        "model.embed_dim": Sourced(embed_dim, f"{asked} ({SCRIPT} runs 128-d and 512-d cells)"),
        "loss.name": Sourced(loss, asked),
        "language.guidance": Sourced(guidance, asked),
        **{key: Sourced(copy.deepcopy(value), source) for key, (value, source) in COMMON.items()},
        "run.epochs": c.epochs,
        "optim.batch_size": c.batch,
        "language.omega": c.omega,
        "loss.kwargs": loss_kwargs(loss, c),
    }


def values(sourced: dict[str, Sourced]) -> dict[str, Any]:
    return {key: item.value for key, item in sourced.items()}


def sources(sourced: dict[str, Sourced]) -> dict[str, str]:
    return {key: item.source for key, item in sourced.items()}


def _follow(base: Sourced, rule: str) -> Sourced:
    """A value another cell lends: derived when the lender's value is the release's, else still a stand-in."""
    kind = "stand-in" if base.source.startswith("stand-in") else "derived"
    return Sourced(base.value, f"{kind}: {rule} <- {base.source}")


def _check(dataset: str, embed_dim: int, loss: str, guidance: str) -> None:
    for what, value, allowed in (
        ("dataset", dataset, DATASETS),
        ("embed_dim", embed_dim, DIMS),
        ("loss", loss, LOSSES),
        ("guidance", guidance, GUIDANCE),
    ):
        if value not in allowed:
            raise ConfigError(
                f"The paper's recipe has no {what} {value!r}; expected one of {', '.join(map(str, allowed))}."
            )
