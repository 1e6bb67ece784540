"""S2SD (Roth et al. 2021) as the language-guidance release runs it: auxiliary higher-dimensional heads
distilled into the embedding."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from langdml_core.config import ConfigError
from langdml_core.losses.base import DMLLoss, Indices, build_loss, check_choice, register_loss

S2SD_HEADS = ("target", "feature")
S2SD_COMBINE = ("mean", "sum")


@register_loss("s2sd")
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
        check_choice(self.name, "head_hidden", h["head_hidden"], S2SD_HEADS)
        check_choice(self.name, "combine", h["combine"], S2SD_COMBINE)
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
