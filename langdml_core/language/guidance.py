"""The language matching term L_match (Roth et al. 2022, eq. 2-4) and its per-batch wiring.

L_match distils the language model's view of which classes are alike into the image embedding space:
row-softmaxed similarity matrices of a batch are matched with a KL divergence. Same-class pairs are
overwritten by a constant in both matrices, so they get no gradient from this term (the DML loss alone
shapes intra-class structure) and only the arrangement of *different* classes follows language.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from langdml_core.config import CHOICES

DIRECTIONS = CHOICES["language.direction"]


def language_match_loss(
    embeddings: Tensor,
    labels: Tensor,
    lang_sim: Tensor,
    *,
    temperature: float = 1.0,
    shift: float = 1.0,
    direction: str = "img||lang",
    mask_same_class: bool = True,
) -> Tensor:
    """KL between row-softmaxed image and language similarity matrices of one batch.

    embeddings: (B, D) L2-normalised final embeddings; labels: (B,); lang_sim: (B, B) raw cosine
    similarities of the samples' class texts (precomputed, no gradient).
    direction "img||lang" = KL(P_img || P_lang), the paper's equation and the release default;
    "lang||img" = KL(P_lang || P_img), classic distillation. Summed over each row, averaged over rows,
    times T^2.
    """
    return similarity_match_loss(
        embeddings @ embeddings.T,
        labels,
        lang_sim,
        temperature=temperature,
        shift=shift,
        direction=direction,
        mask_same_class=mask_same_class,
    )


def similarity_match_loss(
    sim_img: Tensor,
    labels: Tensor,
    lang_sim: Tensor,
    *,
    temperature: float = 1.0,
    shift: float = 1.0,
    direction: str = "img||lang",
    mask_same_class: bool = True,
) -> Tensor:
    """``language_match_loss`` from the (B, B) image similarity matrix itself (steps 3-6 of the method)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not one of {DIRECTIONS}.")
    sim_lang = lang_sim.detach().to(sim_img.dtype) + shift
    if mask_same_class:
        same = labels[:, None] == labels[None, :]
        constant = torch.full_like(sim_img, 1.0 + shift)
        sim_img = torch.where(same, constant, sim_img)
        sim_lang = torch.where(same, constant, sim_lang)
    log_p_img = F.log_softmax(sim_img / temperature, dim=1)
    log_p_lang = F.log_softmax(sim_lang / temperature, dim=1)
    if direction == "img||lang":
        kl = (log_p_img.exp() * (log_p_img - log_p_lang)).sum(dim=1)
    else:
        kl = (log_p_lang.exp() * (log_p_lang - log_p_img)).sum(dim=1)
    return kl.mean() * temperature**2


def batch_language_similarity(table: Tensor, labels: Tensor) -> Tensor:
    """(B, B) language similarity of a batch from a (C, K, D) table of L2-normalised class embeddings.

    K = 1 for ELG. For PLG the K pseudo-label slots are rank-aligned: slot r of sample i is compared with
    slot r of sample j only, and the K cosine matrices are averaged.
    """
    per_sample = table[labels]  # (B, K, D)
    return torch.einsum("ikd,jkd->ij", per_sample, per_sample) / table.shape[1]


class LanguageGuidance(torch.nn.Module):
    """Adds ``{"lang_match_loss": omega * L_match}`` to the loss terms once ``delay`` iterations have passed."""

    def __init__(
        self,
        table: Tensor,
        *,
        omega: float,
        temperature: float,
        shift: float,
        direction: str,
        mask_same_class: bool,
        delay: int = 0,
    ):
        super().__init__()
        if table.ndim != 3:
            raise ValueError(
                f"The class-text table must be (classes, K, dim), got shape {tuple(table.shape)}."
            )
        self.register_buffer("table", F.normalize(table.float(), dim=-1), persistent=False)
        self.omega, self.delay = omega, delay
        self.options = dict(
            temperature=temperature, shift=shift, direction=direction, mask_same_class=mask_same_class
        )

    def forward(self, embeddings: Tensor, labels: Tensor, step: int) -> dict[str, Tensor]:
        if step < self.delay or self.omega == 0:
            return {"lang_match_loss": embeddings.new_zeros(())}
        lang_sim = batch_language_similarity(self.table, labels)
        return {
            "lang_match_loss": self.omega * language_match_loss(embeddings, labels, lang_sim, **self.options)
        }
