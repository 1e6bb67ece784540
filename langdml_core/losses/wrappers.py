"""The registered DML losses over pytorch-metric-learning with the paper's hyper-parameters; multisimilarity and
margin compute the release's formulation by default (``loss.kwargs.formulation``)."""

from __future__ import annotations

from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import nn

from langdml_core.config import ConfigError
from langdml_core.losses.base import FORMULATIONS, DMLLoss, check_choice, register_loss
from langdml_core.losses.release import (
    MARGIN_COUNTS,
    ReleaseDistanceWeightedMiner,
    ReleaseMarginLoss,
    ReleaseMultiSimilarityLoss,
)


@register_loss("multisimilarity")
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
        check_choice(self.name, "formulation", h["formulation"], FORMULATIONS)
        if h["formulation"] == "release":
            h.update(miner="multisimilarity (inside the loss)", reducer="softplus of batch means")
            return ReleaseMultiSimilarityLoss(h["alpha"], h["beta"], h["base"], h["epsilon"])
        h.update(miner="multisimilarity", reducer="mean")
        return pml_losses.MultiSimilarityLoss(alpha=h["alpha"], beta=h["beta"], base=h["base"])

    def build_miner(self) -> nn.Module | None:
        if self.hparams["formulation"] == "release":
            return None  # mining is part of the release's loss
        return pml_miners.MultiSimilarityMiner(epsilon=self.hparams["epsilon"])


@register_loss("margin")
class Margin(DMLLoss):
    """Margin loss with a learnable class-wise beta and distance-weighted negative sampling.

    ``formulation="release"`` (default): one triplet per anchor, the negative drawn among all different-class
    samples of the batch (``ReleaseDistanceWeightedMiner``), the sum of the hinge terms divided by the
    number of non-zero terms (``count="terms"``, the formula as usually stated) or by the number of triplets
    with a non-zero term (``count="triplets"``: what the release's code computes, which the paper sweeps
    select; ``ReleaseMarginLoss``, ``MARGIN_COUNTS``). ``"pml"``: pytorch-metric-learning's
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
        "count": "terms",
    }
    fixed = {"distance": "euclidean", "classwise_beta": True}

    def build_pml(self) -> nn.Module:
        h = self.hparams
        check_choice(self.name, "formulation", h["formulation"], FORMULATIONS)
        check_choice(self.name, "count", h["count"], MARGIN_COUNTS)
        if h["formulation"] == "release":
            h.update(miner="distance_weighted_release", reducer=f"nonzero_{h['count']}")
            return ReleaseMarginLoss(self.num_classes, h["margin"], h["beta"], h["nu"], h["count"])
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


@register_loss("proxy_anchor")
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


@register_loss("arcface")
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


@register_loss("normalized_softmax")
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


@register_loss("triplet")
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


@register_loss("contrastive")
class Contrastive(DMLLoss):
    """Contrastive loss on all pairs, pml defaults (un-squared distances, release defaults 0 / 1 too)."""

    defaults = {"pos_margin": 0.0, "neg_margin": 1.0}
    fixed = {"distance": "euclidean", "miner": "none", "reducer": "avg_non_zero"}

    def build_pml(self) -> nn.Module:
        h = self.hparams
        return pml_losses.ContrastiveLoss(pos_margin=h["pos_margin"], neg_margin=h["neg_margin"])
