"""The language-guidance release's own multisimilarity and margin (criteria/*.py of its code), which produced
the paper's numbers; checked against the release's outputs in tests/test_release_losses.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from langdml_core.losses.base import Indices


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


MARGIN_COUNTS = ("terms", "triplets")
"""What the release's margin loss divides by: ``terms`` = the number of non-zero hinge terms (the
formula as usually stated); ``triplets`` = the number of triplets with at least one non-zero term, what the
release's code computes: ``torch.sum((pos_loss > 0.) + (neg_loss > 0.))`` adds two bool tensors, which torch
(>= 1.2, as the release installs) evaluates as a logical OR, so a triplet with both terms active counts once."""


class ReleaseMarginLoss(nn.Module):
    """sum over triplets of relu(d_ap - beta_y + m) + relu(beta_y - d_an + m), divided by the number of
    non-zero terms (``count="terms"``) or of triplets with a non-zero term (``count="triplets"``, the
    release's code; :data:`MARGIN_COUNTS`), the plain sum when there are none; beta per class, y = the
    anchor's class. ``nu`` > 0 adds nu * sum of the triplets' beta_y (a regulariser; nu = 0 in every release
    run)."""

    def __init__(self, num_classes: int, margin: float, beta: float, nu: float, count: str = "terms"):
        super().__init__()
        if count not in MARGIN_COUNTS:
            raise ValueError(f"count={count!r} must be one of {MARGIN_COUNTS}")
        self.margin, self.nu, self.count = margin, nu, count
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
        if self.count == "triplets":
            nonzero = int(((pos_loss > 0) | (neg_loss > 0)).sum())
        else:
            nonzero = int((pos_loss > 0).sum() + (neg_loss > 0).sum())
        return (total / nonzero if nonzero else total) + self.nu * beta.sum()
