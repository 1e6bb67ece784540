"""Class-text tables: the frozen language side, computed once per key and cached on disk.

ELG: one text per training class (its expert name in the prompt template) -> table (C, 1, D).
PLG: an ImageNet classifier is run once over the training split with its own preprocessing (or the
release's, ``language.plg_transform``); per class the averaged logits (or softmax outputs) give the top-k
ImageNet classes, whose names (first WordNet synonym) go through the prompt and the language model ->
table (C, k, D), rank-aligned.

Every expensive step is keyed by what determines its result (encoder and weights fingerprint, prompt,
texts; classifier, weights, images, averaging, preprocessing) and stored under ``$LANGDML_CACHE/language``
behind a file lock, so all trials of a sweep on a node share one computation and a cache hit never loads a
model.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from langdml_core.cache import atomic_write, cache_dir, files_digest, locked
from langdml_core.config import LanguageConfig
from langdml_core.data.base import ImageSet

log = logging.getLogger(__name__)
MODEL_LOADS = {"encoder": 0, "classifier": 0}
"""How often a language encoder / PLG classifier was actually loaded (cache misses), for tests and logs."""


@dataclass
class ClassTextTable:
    table: torch.Tensor  # (C, K, D), L2-normalised
    texts: list[list[str]]  # the K texts of each class, after prompt and (optional) shuffling
    pseudo_labels: list[dict] | None = None  # PLG only: one row per (class, rank)


def build_table(cfg: LanguageConfig, train: ImageSet, *, seed: int, device: torch.device) -> ClassTextTable:
    """The (C, K, D) table of the configured guidance for the training classes."""
    rng = np.random.default_rng([seed, 7])
    if cfg.guidance == "elg":
        names = list(train.class_texts)
        if cfg.shuffle_texts:  # control: same texts, wrong classes
            names = [names[i] for i in rng.permutation(len(names))]
        texts = [[cfg.prompt.format(name)] for name in names]
        pseudo = None
    elif cfg.guidance == "plg":
        scores = imagenet_class_scores(
            train,
            cfg.plg_classifier,
            cfg.plg_weights_file,
            cfg.plg_average,
            device,
            transform=cfg.plg_transform,
        )
        top = np.argsort(-scores, axis=1, kind="stable")[:, : cfg.topk]
        if cfg.shuffle_texts:
            top = top[rng.permutation(len(top))]
        names = imagenet_names()
        texts = [[cfg.prompt.format(names[i]) for i in row] for row in top]
        pseudo = [
            {
                "class": c,
                "class_text": train.class_texts[c],
                "rank": r + 1,
                "imagenet_index": int(i),
                "imagenet_name": names[i],
                "score": float(scores[c, i]),
            }
            for c, row in enumerate(top)
            for r, i in enumerate(row)
        ]
    else:
        raise ValueError(f"No class-text table for guidance {cfg.guidance!r}.")
    flat = [t for row in texts for t in row]
    unique = sorted(set(flat))
    vectors = encode_cached(unique, cfg.encoder, cfg.encoder_path, cfg.pooling, device)
    index = {t: i for i, t in enumerate(unique)}
    table = torch.from_numpy(vectors[[index[t] for t in flat]]).view(len(texts), len(texts[0]), -1)
    return ClassTextTable(torch.nn.functional.normalize(table, dim=-1), texts, pseudo)


def write_pseudo_labels(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# ---- language encoder, cached per text set -------------------------------------------------------------
def encode_cached(
    texts: list[str], encoder: str, path: str, pooling: str, device: torch.device
) -> np.ndarray:
    key = _digest(
        {
            "encoder": encoder,
            "weights": encoder_fingerprint(encoder, path),
            "pooling": pooling,
            "texts": texts,
        }
    )
    target = cache_dir("language") / f"text-{encoder}-{key[:20]}.npy"
    if not target.exists():
        with locked(target):
            if not target.exists():
                from langdml_core.language.encoders import build_encoder

                MODEL_LOADS["encoder"] += 1
                model = build_encoder(encoder, path=path, pooling=pooling, device=str(device))
                try:
                    vectors = model.encode(texts)
                finally:
                    model.close()  # the language side is frozen: free its memory before training
                atomic_write(target, lambda tmp: np.save(open(tmp, "wb"), vectors.astype(np.float32)))
                log.info(
                    "Encoded %d texts with %s (pooling %s) -> %s", len(texts), encoder, model.pooling, target
                )
    return np.load(target)


# ---- PLG: ImageNet classifier over the training split --------------------------------------------------
def imagenet_class_scores(
    train: ImageSet,
    classifier: str,
    weights_file: str,
    average: str,
    device: torch.device,
    batch_size: int = 64,
    transform: str = "classifier",
) -> np.ndarray:
    """(C, 1000) per-class average of the classifier's logits (release) or softmax outputs (paper text),
    on images preprocessed by the ``transform`` named in :data:`PLG_TRANSFORMS`."""
    if transform not in PLG_TRANSFORMS:
        raise ValueError(
            f"Unknown PLG transform {transform!r}; expected one of: {', '.join(PLG_TRANSFORMS)}."
        )
    key = _digest(
        {
            "classifier": classifier,
            "weights": classifier_fingerprint(classifier, weights_file),
            "images": images_fingerprint(train),
            "average": average,
            "transform": transform,
        }
    )
    target = cache_dir("language") / f"plg-{classifier}-{key[:20]}.npy"
    if not target.exists():
        with locked(target):
            if not target.exists():
                MODEL_LOADS["classifier"] += 1
                scores = _run_classifier(
                    train, classifier, weights_file, average, device, batch_size, transform
                )
                atomic_write(target, lambda tmp: np.save(open(tmp, "wb"), scores))
    return np.load(target)


@torch.no_grad()
def _run_classifier(
    train: ImageSet,
    classifier: str,
    weights_file: str,
    average: str,
    device: torch.device,
    batch_size: int,
    transform: str = "classifier",
) -> np.ndarray:
    from langdml_core.backbones import create_backbone
    from langdml_core.data import TransformedSet

    # channels_last: EfficientNet-Lite0 at 224 px on one CPU thread took 5.3 s instead of 8.5 s per 64 images
    # (one measurement each, 2026-12-02, not a benchmark); the usual layout for depthwise convolutions on GPUs
    model = (
        create_backbone(classifier, pretrained=True, weights_file=weights_file, num_classes=1000)
        .to(device, memory_format=torch.channels_last)
        .eval()
    )
    # The classifier's own preprocessing or the release's (PLG_TRANSFORMS), never the DML transform.
    preprocess = PLG_TRANSFORMS[transform](model)
    loader = torch.utils.data.DataLoader(TransformedSet(train, preprocess), batch_size=batch_size)
    sums = torch.zeros(train.num_classes, 1000, dtype=torch.float64)
    for images, labels in loader:
        out = model(images.to(device, memory_format=torch.channels_last)).double().cpu()
        sums.index_add_(0, labels, out.softmax(dim=1) if average == "softmax" else out)
    counts = torch.bincount(torch.as_tensor(train.labels), minlength=train.num_classes).clamp(min=1)
    del model
    gc.collect()
    return (sums / counts[:, None]).numpy()


def classifier_transform(model: torch.nn.Module):
    """The classifier's own timm evaluation preprocessing (its pretrained_cfg): ``plg_transform=classifier``."""
    import timm.data

    return timm.data.create_transform(**timm.data.resolve_data_config({}, model=model), is_training=False)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def release_transform(model: torch.nn.Module | None = None):
    """The release's PLG preprocessing (``plg_transform=release``), whatever the classifier: Resize(256) of
    the shorter side, CenterCrop(299), ToTensor, ImageNet mean/std (the release ran it with a torchvision
    ResNet-50; method notes section 4 and 11, read from release commit b07ac5b). Since 256 < 299 the crop
    pads the short side with black (zeros, i.e. (0 - mean) / std after normalising)."""
    from torchvision import transforms as T

    return T.Compose(
        [T.Resize(256), T.CenterCrop(299), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


PLG_TRANSFORMS = {"classifier": classifier_transform, "release": release_transform}
"""``language.plg_transform`` name -> (classifier model -> preprocessing of a PIL image)."""


def imagenet_names() -> list[str]:
    """First WordNet synonym of each ImageNet-1k class ("tabby, tabby cat" -> "tabby"), offline from timm."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


# ---- fingerprints ---------------------------------------------------------------------------------------
def encoder_fingerprint(encoder: str, path: str) -> str:
    """Identifies the text encoder's weights by the files it would load (see ``files_digest``)."""
    from langdml_core.language.encoders import encoder_weights

    return files_digest(encoder_weights(encoder, path), encoder)


def classifier_fingerprint(classifier: str, weights_file: str) -> str:
    """Identifies the PLG classifier's weights by the file it would load (see ``files_digest``)."""
    from langdml_core.backbones import pretrained_weights

    return files_digest(pretrained_weights(classifier, weights_file), classifier)


def images_fingerprint(images: ImageSet) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images.labels).tobytes())
    if images.images is not None:
        h.update(np.ascontiguousarray(images.images).tobytes())
    else:
        h.update("\n".join(images.paths).encode())
    return h.hexdigest()


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
