"""DML losses: thin wrappers over pytorch-metric-learning (pml) with the paper's hyper-parameters.

Every loss is built by name through ``LOSSES`` / ``build_loss`` and exposes one interface, so the trainer
never special-cases a loss: ``forward`` returns named ``*_loss`` terms (``dml_loss`` is the full pml
objective), ``param_groups`` returns optimizer groups for loss-owned parameters (proxies, class weights,
learnable margin beta) and ``hparams`` records every setting that determines behaviour, miner included.

Distances are pml's defaults for each loss (the release code uses the same ones): cosine similarity for
multisimilarity / proxy_anchor / arcface, normalised dot product for normalized_softmax, Euclidean distance
between L2-normalised embeddings for margin / triplet / contrastive. Reducers are pml's defaults too and are
recorded in ``hparams["reducer"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import Tensor, nn

from langdml_core.config import ConfigError
from langdml_core.registry import Registry, suggest

LOSSES = Registry("loss")

Indices = tuple[Tensor, ...]


class DMLLoss(nn.Module):
    """Common interface: paper defaults, kwargs overrides, optional miner, loss-owned parameter groups."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    """Overridable hyper-parameters (``loss.kwargs``) with the paper's values."""
    fixed: ClassVar[dict[str, Any]] = {}
    """Settings that are not overridable but belong in the record (distance, miner, pml reducer)."""

    def __init__(self, num_classes: int, embed_dim: int, feature_dim: int = 0, **kwargs: Any):
        super().__init__()
        self.num_classes, self.embed_dim, self.feature_dim = num_classes, embed_dim, feature_dim
        self.hparams: dict[str, Any] = {**self.defaults, **kwargs, **self.fixed}
        self.loss_fn: nn.Module = self.build_pml()
        self.miner: nn.Module | None = self.build_miner()

    def build_pml(self) -> nn.Module:
        raise NotImplementedError

    def build_miner(self) -> nn.Module | None:
        return None

    def mine(self, embeddings: Tensor, labels: Tensor) -> Indices | None:
        """Indices the loss would be computed on (None = pml's all pairs / all samples)."""
        return None if self.miner is None else self.miner(embeddings, labels)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices: Indices | None = None,
        features: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``indices`` replaces this batch's mining (tests); ``features`` (pooled backbone output) is for
        losses that need it (S2SD) and ignored here."""
        if embeddings.dtype in (torch.float16, torch.bfloat16):
            # pml casts proxies/weights *in place* to the input dtype; keep them and the maths in fp32.
            embeddings = embeddings.float()
        if indices is None:
            indices = self.mine(embeddings, labels)
        return {"dml_loss": self.loss_fn(embeddings, labels, indices)}

    def default_lr(self, base_lr: float) -> float:
        return base_lr

    def param_groups(self, base_lr: float, lr_override: float = 0.0) -> list[dict[str, Any]]:
        """One group for all loss-owned parameters, without weight decay (decaying proxies or beta hurts)."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        lr = lr_override if lr_override > 0 else self.default_lr(base_lr)
        return [{"params": params, "lr": lr, "weight_decay": 0.0, "name": f"loss.{self.name}"}]


def _register(name: str) -> Callable[[type[DMLLoss]], type[DMLLoss]]:
    """Register a DMLLoss subclass and record its registry name on the class."""

    def decorator(cls: type[DMLLoss]) -> type[DMLLoss]:
        cls.name = name
        return LOSSES.register(name)(cls)

    return decorator


FORMULATIONS = ("release", "pml")
"""How multisimilarity and margin compute their objective: the language-guidance release's code (default:
it produced the paper's numbers) or pytorch-metric-learning's formulation (langdml before 2026-12)."""


def _check_choice(loss: str, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"loss.kwargs.{key}={value!r} of loss {loss!r} is not valid; expected one of: {', '.join(allowed)}."
        )


@_register("multisimilarity")
class MultiSimilarity(DMLLoss):
    """Multi-Similarity loss with its pair mining (the paper's main objective; pml's beta default is 50).

    ``formulation="release"`` (default) is the release's loss: (1/alpha) softplus(mean_i pos_i) +
    (1/beta) softplus(mean_i neg_i) over all B anchors (``ReleaseMultiSimilarityLoss``). ``"pml"`` is
    pytorch-metric-learning's MultiSimilarityLoss + MultiSimilarityMiner: the mean over anchors of
    (1/alpha) pos_i + (1/beta) neg_i, no softplus; its gradient is larger (1.3-1.7x on a batch of 90).
    """

    defaults = {"formulation": "release", "alpha": 2.0, "beta": 40.0, "base": 0.5, "epsilon": 0.1}
    fixed = {"distance": "cosine"}

    def build_pml(self) -> nn.Module:
        h = self.hparams
        _check_choice(self.name, "formulation", h["formulation"], FORMULATIONS)
        if h["formulation"] == "release":
            h.update(miner="multisimilarity (inside the loss)", reducer="softplus of batch means")
            return ReleaseMultiSimilarityLoss(h["alpha"], h["beta"], h["base"], h["epsilon"])
        h.update(miner="multisimilarity", reducer="mean")
        return pml_losses.MultiSimilarityLoss(alpha=h["alpha"], beta=h["beta"], base=h["base"])

    def build_miner(self) -> nn.Module | None:
        if self.hparams["formulation"] == "release":
            return None  # mining is part of the release's loss
        return pml_miners.MultiSimilarityMiner(epsilon=self.hparams["epsilon"])


class ReleaseMultiSimilarityLoss(nn.Module):
    """The release's multisimilarity (criteria/multisimilarity.py), on L2-normalised embeddings.

    For anchor i, S = E E^T: keep positive j if S_ij - eps < max over negatives S_ik, negative j if
    S_ij + eps > min over positives S_ik; pos_i = log(1 + sum exp(-alpha (S_ij - base))) and
    neg_i = log(1 + sum exp(beta (S_ij - base))) over the kept pairs (0 if none). Loss =
    softplus(mean_i pos_i) / alpha + softplus(mean_i neg_i) / beta, means over all anchors.
    """

    def __init__(self, alpha: float, beta: float, base: float, epsilon: float):
        super().__init__()
        self.alpha, self.beta, self.base, self.epsilon = alpha, beta, base, epsilon

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices | None = None) -> Tensor:
        if indices is not None:
            raise ValueError("the release multisimilarity mines inside the loss; it takes no indices.")
        sim = embeddings @ embeddings.T
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive, negative = same & ~eye, ~same
        s = sim.detach()
        hardest_negative = s.masked_fill(~negative, float("-inf")).amax(dim=1, keepdim=True)
        hardest_positive = s.masked_fill(~positive, float("inf")).amin(dim=1, keepdim=True)
        keep_pos = positive & (s - self.epsilon < hardest_negative)
        keep_neg = negative & (s + self.epsilon > hardest_positive)
        zeros = torch.zeros_like(sim)
        pos = torch.log1p(torch.where(keep_pos, torch.exp(-self.alpha * (sim - self.base)), zeros).sum(1))
        neg = torch.log1p(torch.where(keep_neg, torch.exp(self.beta * (sim - self.base)), zeros).sum(1))
        return F.softplus(pos.mean()) / self.alpha + F.softplus(neg.mean()) / self.beta


@_register("margin")
class Margin(DMLLoss):
    """Margin loss with a learnable class-wise beta and distance-weighted negative sampling.

    ``formulation="release"`` (default): one triplet per anchor, the negative drawn among all different-class
    samples of the batch (``ReleaseDistanceWeightedMiner``), the sum of the hinge terms divided by the
    number of non-zero terms (``ReleaseMarginLoss``). ``"pml"``: pytorch-metric-learning's
    DistanceWeightedMiner (several triplets per anchor) and MarginLoss (divisor reducer).
    ``nonzero_loss_cutoff`` drops negatives at or beyond that distance in both; 0 = no upper cut-off
    (the release disabled it: "made the results slightly worse"). langdml before 2026-12 ran
    ``formulation=pml, nonzero_loss_cutoff=1.4``.
    """

    defaults = {
        "formulation": "release",
        "margin": 0.2,
        "beta": 1.2,
        "nu": 0.0,
        "beta_lr": 5e-4,
        "cutoff": 0.5,
        "nonzero_loss_cutoff": 0.0,
    }
    fixed = {"distance": "euclidean", "classwise_beta": True}

    def build_pml(self) -> nn.Module:
        h = self.hparams
        _check_choice(self.name, "formulation", h["formulation"], FORMULATIONS)
        if h["formulation"] == "release":
            h.update(miner="distance_weighted_release", reducer="nonzero_terms")
            return ReleaseMarginLoss(self.num_classes, h["margin"], h["beta"], h["nu"])
        h.update(miner="distance_weighted", reducer="divisor")
        return pml_losses.MarginLoss(
            margin=h["margin"], nu=h["nu"], beta=h["beta"], learn_beta=True, num_classes=self.num_classes
        )

    def build_miner(self) -> nn.Module:
        h = self.hparams
        upper = h["nonzero_loss_cutoff"] or float("inf")
        if h["formulation"] == "release":
            return ReleaseDistanceWeightedMiner(cutoff=h["cutoff"], nonzero_loss_cutoff=upper)
        return pml_miners.DistanceWeightedMiner(cutoff=h["cutoff"], nonzero_loss_cutoff=upper)

    @property
    def beta(self) -> nn.Parameter:
        """Class-wise margin boundaries, shape (num_classes,)."""
        return self.loss_fn.beta

    def default_lr(self, base_lr: float) -> float:
        return float(self.hparams["beta_lr"])  # absolute in the release (5e-4), independent of base_lr


def _distances(embeddings: Tensor) -> Tensor:
    """sqrt(||a - b||^2 + 1e-8) between all rows (the release's distance)."""
    return ((embeddings[:, None, :] - embeddings[None, :, :]).pow(2).sum(-1) + 1e-8).sqrt()


class ReleaseDistanceWeightedMiner(nn.Module):
    """One (anchor, positive, negative) triplet per anchor, as the release samples them (Wu et al. 2017).

    The positive is uniform among the anchor's other same-class samples; the negative is drawn among all
    different-class samples with probability proportional to q(d)^-1 = d^(2-D) (1 - d^2/4)^((3-D)/2), d
    clamped below at ``cutoff``. Anchors without a positive or a negative are skipped. Draws use torch's
    global generator (seeded by the trial).
    """

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = float("inf")):
        super().__init__()
        self.cutoff, self.nonzero_loss_cutoff = cutoff, nonzero_loss_cutoff

    @torch.no_grad()
    def forward(self, embeddings: Tensor, labels: Tensor) -> Indices:
        n, dim = embeddings.shape
        dist = _distances(embeddings.detach())
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=labels.device)
        positive = same & ~eye
        d = dist.clamp(min=self.cutoff)
        # 1 - d^2/4 reaches 0 only for antipodal points; the floor keeps the log finite there.
        log_weight = (2.0 - dim) * d.log() - (dim - 3) / 2 * (1.0 - d.pow(2) / 4).clamp(min=1e-8).log()
        negative = ~same & (dist < self.nonzero_loss_cutoff)
        log_weight = log_weight.masked_fill(~negative, float("-inf"))
        anchors = torch.nonzero(positive.any(1) & negative.any(1)).flatten()
        if len(anchors) == 0:
            empty = labels.new_zeros(0)
            return empty, empty, empty
        pos_weight = positive[anchors].to(embeddings.dtype)
        positives = torch.multinomial(pos_weight, 1).squeeze(1)
        rows = log_weight[anchors]
        neg_prob = torch.exp(rows - rows.amax(dim=1, keepdim=True))
        negatives = torch.multinomial(neg_prob, 1).squeeze(1)
        return anchors, positives, negatives


class ReleaseMarginLoss(nn.Module):
    """sum over triplets of relu(d_ap - beta_y + m) + relu(beta_y - d_an + m), divided by the number of
    non-zero terms (the plain sum when there are none); beta per class, y = the anchor's class. ``nu`` > 0
    adds nu * sum of the triplets' beta_y (a regulariser; nu = 0 in every release run)."""

    def __init__(self, num_classes: int, margin: float, beta: float, nu: float):
        super().__init__()
        self.margin, self.nu = margin, nu
        self.beta = nn.Parameter(torch.full((num_classes,), float(beta)))

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Indices) -> Tensor:
        anchors, positives, negatives = indices
        if len(anchors) == 0:
            return embeddings.sum() * 0.0
        a = embeddings[anchors]
        d_ap = ((a - embeddings[positives]).pow(2).sum(1) + 1e-8).sqrt()
        d_an = ((a - embeddings[negatives]).pow(2).sum(1) + 1e-8).sqrt()
        beta = self.beta[labels[anchors]].to(embeddings.dtype)
        pos_loss = F.relu(d_ap - beta + self.margin)
        neg_loss = F.relu(beta - d_an + self.margin)
        total = (pos_loss + neg_loss).sum()
        nonzero = int((pos_loss > 0).sum() + (neg_loss > 0).sum())
        return (total / nonzero if nonzero else total) + self.nu * beta.sum()


@_register("proxy_anchor")
class ProxyAnchor(DMLLoss):
    """Proxy-Anchor loss; proxies learn at ``proxy_lr_mult`` x the backbone lr."""

    defaults = {"alpha": 32.0, "margin": 0.1, "proxy_lr_mult": 100.0}
    fixed = {"distance": "cosine", "miner": "none", "reducer": "divisor"}

    def build_pml(self) -> nn.Module:
        h = self.hparams
        return pml_losses.ProxyAnchorLoss(
            self.num_classes, self.embed_dim, margin=h["margin"], alpha=h["alpha"]
        )

    @property
    def proxies(self) -> nn.Parameter:
        """Class proxies, shape (num_classes, embed_dim)."""
        return self.loss_fn.proxies

    def default_lr(self, base_lr: float) -> float:
        return base_lr * float(self.hparams["proxy_lr_mult"])


@_register("arcface")
class ArcFace(DMLLoss):
    """ArcFace (additive angular margin, ``margin`` in degrees as in pml: 28.6 = 0.4992 rad).

    Class weights learn at 50 x base lr: the release trains them at an absolute 5e-4 with base lr 1e-5.
    """

    defaults = {"margin": 28.6, "scale": 64.0, "proxy_lr_mult": 50.0}
    fixed = {"distance": "cosine", "miner": "none", "reducer": "mean"}

    def build_pml(self) -> nn.Module:
        h = self.hparams
        return pml_losses.ArcFaceLoss(self.num_classes, self.embed_dim, margin=h["margin"], scale=h["scale"])

    @property
    def weight(self) -> nn.Parameter:
        """Class weights, shape (embed_dim, num_classes)."""
        return self.loss_fn.W

    def default_lr(self, base_lr: float) -> float:
        return base_lr * float(self.hparams["proxy_lr_mult"])


@_register("normalized_softmax")
class NormalizedSoftmax(DMLLoss):
    """Normalised softmax (cosine logits / temperature); class weights at 1 x base lr like the release (1e-5)."""

    defaults = {"temperature": 0.05, "proxy_lr_mult": 1.0}
    fixed = {"distance": "dot_product_normalized", "miner": "none", "reducer": "mean"}

    def build_pml(self) -> nn.Module:
        return pml_losses.NormalizedSoftmaxLoss(
            self.num_classes, self.embed_dim, temperature=self.hparams["temperature"]
        )

    @property
    def weight(self) -> nn.Parameter:
        """Class weights, shape (embed_dim, num_classes)."""
        return self.loss_fn.W

    def default_lr(self, base_lr: float) -> float:
        return base_lr * float(self.hparams["proxy_lr_mult"])


TRIPLET_TYPES = ("all", "hard", "semihard", "easy")


@_register("triplet")
class Triplet(DMLLoss):
    """Triplet loss on the triplets of a margin miner; one ``margin`` drives both (pml's loss default: 0.05)."""

    defaults = {"margin": 0.2, "type_of_triplets": "semihard"}
    fixed = {"distance": "euclidean", "miner": "triplet_margin", "reducer": "avg_non_zero"}

    def build_pml(self) -> nn.Module:
        if self.hparams["type_of_triplets"] not in TRIPLET_TYPES:
            raise ConfigError(
                f"loss.kwargs.type_of_triplets={self.hparams['type_of_triplets']!r} is not valid; "
                f"expected one of: {', '.join(TRIPLET_TYPES)}."
            )
        return pml_losses.TripletMarginLoss(margin=self.hparams["margin"])

    def build_miner(self) -> nn.Module:
        h = self.hparams
        return pml_miners.TripletMarginMiner(margin=h["margin"], type_of_triplets=h["type_of_triplets"])


@_register("contrastive")
class Contrastive(DMLLoss):
    """Contrastive loss on all pairs, pml defaults (un-squared distances, release defaults 0 / 1 too)."""

    defaults = {"pos_margin": 0.0, "neg_margin": 1.0}
    fixed = {"distance": "euclidean", "miner": "none", "reducer": "avg_non_zero"}

    def build_pml(self) -> nn.Module:
        h = self.hparams
        return pml_losses.ContrastiveLoss(pos_margin=h["pos_margin"], neg_margin=h["neg_margin"])


S2SD_HEADS = ("target", "feature")
S2SD_COMBINE = ("mean", "sum")


@_register("s2sd")
class S2SD(DMLLoss):
    """S2SD (Roth et al. 2021) as the language-guidance release runs it (criteria/s2sd.py).

    Auxiliary heads, one per target dim t: Linear(F, t) -> ReLU -> Linear(t, t) -> L2-normalise
    (``head_hidden="target"``; ``"feature"`` = Linear(F, F) -> ReLU -> Linear(F, t)), on pooled backbone
    features h = avgpool + maxpool of the feature map (``pool_aggr``; else avgpool). Each head trains with
    its own instance of the base loss. With P = row-softmax(S / T) of cosine matrices and KL(P_x || P_src)
    summed over rows, averaged over the batch, times T^2, the heads' side detached:

        (L_src + mean_t L_t) / 2 + w * mean_t KL_t + [step >= delay] * feat_w * KL(P_h || P_src)

    (``combine="mean"``; ``"sum"`` = L_src + sum_t L_t + w * sum_t KL_t). The release never turns on the
    similarity distillation (w = 0) and runs feature distillation from step 0 with a per-cell weight (125 /
    50 / 60 / 40, see ``langdml_core.paper``). langdml before 2026-12 ran ``head_hidden=feature,
    combine=sum, pool_aggr=false, feat_distill_weight=50, feat_distill_delay=1000``.
    Named terms: ``dml_loss`` (the L_src share), ``s2sd_target_loss``, ``s2sd_sim_distill_loss``,
    ``s2sd_feat_distill_loss``; they sum to the objective.
    """

    defaults = {
        "base": "multisimilarity",
        "base_kwargs": {},
        "target_dims": [1024, 1536, 2048],
        "temperature": 1.0,
        "sim_distill_weight": 0.0,
        "feat_distill_weight": 50.0,
        "feat_distill_delay": 0,
        "pool_aggr": True,
        "head_hidden": "target",
        "combine": "mean",
    }
    fixed = {"kl": "KL(P_head || P_src) * T^2, head side detached"}

    def __init__(self, num_classes: int, embed_dim: int, feature_dim: int = 0, **kwargs: Any):
        super().__init__(num_classes, embed_dim, feature_dim, **kwargs)
        if feature_dim <= 0:
            raise ConfigError("loss 's2sd' needs the backbone's pooled feature dimension (feature_dim).")
        h = self.hparams
        _check_choice(self.name, "head_hidden", h["head_hidden"], S2SD_HEADS)
        _check_choice(self.name, "combine", h["combine"], S2SD_COMBINE)
        if h["base"] == "s2sd":
            raise ConfigError(
                "loss.kwargs.base='s2sd' is not valid; S2SD wraps a plain DML loss such as multisimilarity."
            )
        self.base = build_loss(h["base"], num_classes, embed_dim, h["base_kwargs"])
        dims = [int(d) for d in h["target_dims"]]

        def head(t: int) -> nn.Module:
            hidden = t if h["head_hidden"] == "target" else feature_dim
            return nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, t))

        self.heads = nn.ModuleList(head(t) for t in dims)
        self.target_losses = nn.ModuleList(
            build_loss(h["base"], num_classes, d, h["base_kwargs"]) for d in dims
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def build_pml(self) -> nn.Module:
        return nn.Identity()  # the base and target losses are full DMLLoss modules

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices: Indices | None = None,
        features: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``features``: the backbone's feature map (B, F, H, W), or (B, F) already pooled when
        ``pool_aggr`` is off."""
        if features is None:
            raise ValueError("S2SD needs the backbone features: call it with features=...")
        h = self.hparams
        if embeddings.dtype in (torch.float16, torch.bfloat16):  # as in DMLLoss.forward: maths in fp32
            embeddings, features = embeddings.float(), features.float()
        pooled = pool_features(features, h["pool_aggr"])
        reduce = (lambda xs: sum(xs) / len(xs)) if h["combine"] == "mean" else sum
        half = 0.5 if h["combine"] == "mean" else 1.0
        temperature = h["temperature"]
        log_p_src = F.log_softmax(embeddings @ embeddings.T / temperature, dim=1)

        target_losses, sim_distills = [], []
        for head, loss in zip(self.heads, self.target_losses, strict=True):
            target = F.normalize(head(pooled), dim=-1)
            target_losses.append(loss(target, labels)["dml_loss"])
            if h["sim_distill_weight"]:
                sim_distills.append(_kl_rows(target @ target.T, log_p_src, temperature))
        terms = {
            "dml_loss": half * self.base(embeddings, labels, indices)["dml_loss"],
            "s2sd_target_loss": half * reduce(target_losses),
            "s2sd_sim_distill_loss": h["sim_distill_weight"] * reduce(sim_distills)
            if sim_distills
            else embeddings.new_zeros(()),
        }
        feat_loss = embeddings.new_zeros(())
        if h["feat_distill_weight"] and int(self.step) >= h["feat_distill_delay"]:
            unit = F.normalize(pooled, dim=-1)
            feat_loss = h["feat_distill_weight"] * _kl_rows(unit @ unit.T, log_p_src, temperature)
        terms["s2sd_feat_distill_loss"] = feat_loss
        if self.training:
            self.step += 1
        return terms

    def param_groups(self, base_lr: float, lr_override: float = 0.0) -> list[dict[str, Any]]:
        """The auxiliary heads train at the model's lr; the wrapped losses keep their own groups."""
        groups = [
            {
                "params": list(self.heads.parameters()),
                "lr": lr_override or base_lr,
                "weight_decay": 0.0,
                "name": "loss.s2sd.heads",
            }
        ]
        for i, loss in enumerate([self.base, *self.target_losses]):
            for group in loss.param_groups(base_lr, lr_override):
                groups.append({**group, "name": f"{group['name']}.{i}"})
        return groups


def pool_features(features: Tensor, aggr: bool) -> Tensor:
    """Global pooling of a CNN feature map (B, F, H, W) or a transformer's tokens (B, N, F): average, plus
    the maximum when ``aggr``."""
    if features.ndim == 2:
        if aggr:
            raise ValueError(
                "S2SD with pool_aggr=true needs the unpooled (B, F, H, W) feature map, got (B, F) features."
            )
        return features
    if features.ndim not in (3, 4):
        raise ValueError(f"S2SD expects (B, F, H, W) or (B, N, F) features, got {tuple(features.shape)}.")
    dims = (2, 3) if features.ndim == 4 else (1,)
    pooled = features.mean(dim=dims)
    return pooled + features.amax(dim=dims) if aggr else pooled


def _kl_rows(teacher_logits: Tensor, log_p_student: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(softmax(teacher / T) || student) summed over each row, averaged over rows, times T^2; the
    teacher gets no gradient."""
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1).mean()
    return kl * temperature**2


def _check_kwarg(name: str, key: str, value: Any, default: Any) -> Any:
    """Coerce ints to floats for float defaults; refuse other type mismatches with one sentence."""
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise ConfigError(
            f"loss.kwargs.{key} of loss {name!r} must be {type(default).__name__}, got {value!r}."
        )
    return value


def build_loss(
    name: str, num_classes: int, embed_dim: int, kwargs: dict[str, Any] | None = None, feature_dim: int = 0
) -> DMLLoss:
    """Build a registered loss; unknown names raise the registry's error, unknown kwargs a ConfigError."""
    cls = LOSSES.get(name)
    checked = {}
    for key, value in (kwargs or {}).items():
        if key not in cls.defaults:
            valid = sorted(cls.defaults)
            raise ConfigError(
                f"Unknown loss.kwargs.{key} for loss {name!r}{suggest(key, valid)}; "
                f"expected one of: {', '.join(valid)}."
            )
        checked[key] = _check_kwarg(name, key, value, cls.defaults[key])
    return cls(num_classes, embed_dim, feature_dim=feature_dim, **checked)
