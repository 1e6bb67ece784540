"""Image transforms: the paper's DML recipe, normalised the way the pretrained backbone expects."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms as T

INTERPOLATION = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}

SOURCE_SIZE = "langdml_source_size"
"""Key in a cached PIL image's ``info``: the (width, height) of the original it was resized from."""


def eval_resize(image_size: int, resize: int = 0) -> int:
    """Short side before the centre crop: the paper's 256 for 224, scaled for other sizes."""
    return resize or round(image_size * 256 / 224)


def train_transform(
    image_size: int,
    mean,
    std,
    interpolation: str = "bilinear",
    cached: bool = False,
    crop_scale: float = 0.08,
) -> T.Compose:
    """RandomResizedCrop of [crop_scale, 1] of the area + horizontal flip (release recipe: 0.08, torchvision's
    default); ``cached`` for images from the image cache."""
    if cached:
        return T.Compose(
            [
                CachedRandomResizedCrop(image_size, interpolation, scale=(crop_scale, 1.0)),
                T.RandomHorizontalFlip(),
                UInt8ToFloat(),
                T.Normalize(mean, std),
            ]
        )
    return T.Compose(
        [
            T.RandomResizedCrop(
                image_size, scale=(crop_scale, 1.0), interpolation=INTERPOLATION[interpolation]
            ),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def eval_transform(image_size: int, mean, std, interpolation: str = "bilinear", resize: int = 0) -> T.Compose:
    """Resize(256) + CenterCrop(224) for the paper's size (Resize is a no-op on cached images)."""
    return T.Compose(
        [
            T.Resize(eval_resize(image_size, resize), interpolation=INTERPOLATION[interpolation]),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


class CachedRandomResizedCrop(torch.nn.Module):
    """RandomResizedCrop of the original image, cut from its downscaled copy in the image cache.

    The box is drawn by torchvision's ``RandomResizedCrop.get_params`` on the original size (stored in
    ``image.info``), so the same random draws choose the same region as on the original; it is then mapped
    onto the cached pixels and rounded to whole pixels, so each edge lies within half a cached pixel of the
    original box (0.73 source px for a 500 x 375 image cached at 256). The crop is resized with
    antialiasing on a uint8 tensor (torch's PIL-like kernel, about 3x faster than PIL). Pixel values then
    differ from cropping the original by resampling only (tolerance tested in tests/test_image_cache.py).
    Returns a (3, size, size) uint8 tensor. Without ``SOURCE_SIZE`` the image is its own source.
    """

    def __init__(self, size: int, interpolation: str = "bilinear", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        super().__init__()
        self.size, self.mode, self.scale, self.ratio = size, interpolation, scale, ratio

    def source_box(self, source_width: int, source_height: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) in source pixels: torchvision's draw, same random numbers used."""
        shape_only = torch.empty(1).expand(3, source_height, source_width)  # no pixel memory
        return T.RandomResizedCrop.get_params(shape_only, list(self.scale), list(self.ratio))

    def forward(self, image) -> torch.Tensor:
        width, height = image.size
        source_w, source_h = image.info.get(SOURCE_SIZE, image.size)
        top, left, h, w = self.source_box(source_w, source_h)
        sy, sx = height / source_h, width / source_w
        y0, x0 = round(top * sy), round(left * sx)
        y1, x1 = max(round((top + h) * sy), y0 + 1), max(round((left + w) * sx), x0 + 1)
        pixels = torch.from_numpy(np.array(image)[y0:y1, x0:x1])  # (h, w, 3): channels_last below
        crop = pixels.permute(2, 0, 1).unsqueeze(0)
        antialias = self.mode != "nearest"
        out = F.interpolate(crop, size=(self.size, self.size), mode=self.mode, antialias=antialias)
        return out[0].contiguous()


class UInt8ToFloat(torch.nn.Module):
    """uint8 (C, H, W) -> float in [0, 1], the same arithmetic as ``ToTensor``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.get_default_dtype()).div(255)
