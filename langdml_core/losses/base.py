"""The loss interface (DMLLoss), the registry and ``build_loss``: every loss is built by name, with its
kwargs checked against its defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
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


def register_loss(name: str) -> Callable[[type[DMLLoss]], type[DMLLoss]]:
    """Register a DMLLoss subclass and record its registry name on the class."""

    def decorator(cls: type[DMLLoss]) -> type[DMLLoss]:
        cls.name = name
        return LOSSES.register(name)(cls)

    return decorator


FORMULATIONS = ("release", "pml")
"""How multisimilarity and margin compute their objective: the language-guidance release's code (default:
it produced the paper's numbers) or pytorch-metric-learning's formulation (langdml before 2026-12)."""


def check_choice(loss: str, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"loss.kwargs.{key}={value!r} of loss {loss!r} is not valid; expected one of: {', '.join(allowed)}."
        )


def check_kwarg(name: str, key: str, value: Any, default: Any) -> Any:
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
        checked[key] = check_kwarg(name, key, value, cls.defaults[key])
    return cls(num_classes, embed_dim, feature_dim=feature_dim, **checked)
