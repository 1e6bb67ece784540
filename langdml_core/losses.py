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


@_register("multisimilarity")
class MultiSimilarity(DMLLoss):
    """Multi-Similarity loss + MS pair miner (the paper's main objective); pml's beta default is 50, paper 40."""

    defaults = {"alpha": 2.0, "beta": 40.0, "base": 0.5, "epsilon": 0.1}
    fixed = {"distance": "cosine", "miner": "multisimilarity", "reducer": "mean"}

    def build_pml(self) -> nn.Module:
        h = self.hparams
        return pml_losses.MultiSimilarityLoss(alpha=h["alpha"], beta=h["beta"], base=h["base"])

    def build_miner(self) -> nn.Module:
        return pml_miners.MultiSimilarityMiner(epsilon=self.hparams["epsilon"])


@_register("margin")
class Margin(DMLLoss):
    """Margin loss with a learnable class-wise beta and distance-weighted negative sampling (random)."""

    defaults = {
        "margin": 0.2,
        "beta": 1.2,
        "nu": 0.0,
        "beta_lr": 5e-4,
        "cutoff": 0.5,
        "nonzero_loss_cutoff": 1.4,
    }
    fixed = {
        "distance": "euclidean",
        "miner": "distance_weighted",
        "reducer": "divisor",
        "classwise_beta": True,
    }

    def build_pml(self) -> nn.Module:
        h = self.hparams
        return pml_losses.MarginLoss(
            margin=h["margin"], nu=h["nu"], beta=h["beta"], learn_beta=True, num_classes=self.num_classes
        )

    def build_miner(self) -> nn.Module:
        h = self.hparams
        return pml_miners.DistanceWeightedMiner(
            cutoff=h["cutoff"], nonzero_loss_cutoff=h["nonzero_loss_cutoff"]
        )

    @property
    def beta(self) -> nn.Parameter:
        """Class-wise margin boundaries, shape (num_classes,)."""
        return self.loss_fn.beta

    def default_lr(self, base_lr: float) -> float:
        return float(self.hparams["beta_lr"])  # absolute in the release (5e-4), independent of base_lr


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


@_register("s2sd")
class S2SD(DMLLoss):
    """S2SD (Roth et al. 2021): a base DML loss plus higher-dimensional auxiliary embedding heads trained with
    the same base loss, KL distillation of their (detached) similarity structure into the base embedding,
    and distillation of the pooled backbone features' similarity structure.

    Original S2SD: ``sim_distill_weight`` 50 and ``feat_distill_weight`` 50 after 1000 iterations. The
    language-guidance release ran S2SD with similarity distillation off (weight 0, feature distillation
    only); that is the default here because the paper's Table 1 numbers come from it. Set
    ``loss.kwargs.sim_distill_weight=50`` for the original method.
    """

    defaults = {
        "base": "multisimilarity",
        "base_kwargs": {},
        "target_dims": [1024, 1536, 2048],
        "temperature": 1.0,
        "sim_distill_weight": 0.0,
        "feat_distill_weight": 50.0,
        "feat_distill_delay": 1000,
    }
    fixed = {
        "heads": "mlp(F, F) -> relu -> linear(F, d), L2-normalised",
        "kl": "KL(P_teacher || P_base), teacher detached",
    }

    def __init__(self, num_classes: int, embed_dim: int, feature_dim: int = 0, **kwargs: Any):
        super().__init__(num_classes, embed_dim, feature_dim, **kwargs)
        if feature_dim <= 0:
            raise ConfigError("loss 's2sd' needs the backbone's pooled feature dimension (feature_dim).")
        h = self.hparams
        if h["base"] == "s2sd":
            raise ConfigError(
                "loss.kwargs.base='s2sd' is not valid; S2SD wraps a plain DML loss such as multisimilarity."
            )
        self.base = build_loss(h["base"], num_classes, embed_dim, h["base_kwargs"])
        dims = [int(d) for d in h["target_dims"]]
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, d))
            for d in dims
        )
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
        if features is None:
            raise ValueError("S2SD needs the pooled backbone features: call it with features=...")
        h = self.hparams
        if embeddings.dtype in (torch.float16, torch.bfloat16):  # as in DMLLoss.forward: maths in fp32
            embeddings, features = embeddings.float(), features.float()
        terms = {"dml_loss": self.base(embeddings, labels, indices)["dml_loss"]}
        log_p_base = F.log_softmax(embeddings @ embeddings.T / h["temperature"], dim=1)
        target_loss, sim_distill = embeddings.new_zeros(()), embeddings.new_zeros(())
        for head, loss in zip(self.heads, self.target_losses, strict=True):
            target = F.normalize(head(features), dim=-1)
            target_loss = target_loss + loss(target, labels)["dml_loss"]
            if h["sim_distill_weight"]:
                sim_distill = sim_distill + _kl_rows(target @ target.T / h["temperature"], log_p_base)
        terms["s2sd_target_loss"] = target_loss
        terms["s2sd_sim_distill_loss"] = h["sim_distill_weight"] * sim_distill
        feat_loss = embeddings.new_zeros(())
        if h["feat_distill_weight"] and int(self.step) >= h["feat_distill_delay"]:
            pooled = F.normalize(features, dim=-1)
            feat_loss = h["feat_distill_weight"] * _kl_rows(pooled @ pooled.T / h["temperature"], log_p_base)
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


def _kl_rows(teacher_logits: Tensor, log_p_student: Tensor) -> Tensor:
    """Mean over rows of KL(softmax(teacher) || student); the teacher gets no gradient."""
    log_p_teacher = F.log_softmax(teacher_logits.detach(), dim=1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1).mean()


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
