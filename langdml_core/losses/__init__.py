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

from langdml_core.losses.base import FORMULATIONS, LOSSES, DMLLoss, build_loss, register_loss

# Importing a module registers its losses.
from langdml_core.losses.s2sd import S2SD, pool_features
from langdml_core.losses.wrappers import (
    ArcFace,
    Contrastive,
    Margin,
    MultiSimilarity,
    NormalizedSoftmax,
    ProxyAnchor,
    Triplet,
)

__all__ = [
    "FORMULATIONS", "LOSSES", "ArcFace", "Contrastive", "DMLLoss", "Margin", "MultiSimilarity",
    "NormalizedSoftmax", "ProxyAnchor", "S2SD", "Triplet", "build_loss", "pool_features", "register_loss",
]  # fmt: skip
