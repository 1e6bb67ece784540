"""Image transforms: the paper's DML recipe, normalised the way the pretrained backbone expects."""

from __future__ import annotations

from torchvision import transforms as T

_INTERPOLATION = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}


def eval_resize(image_size: int, resize: int = 0) -> int:
    """Short side before the centre crop: the paper's 256 for 224, scaled for other sizes."""
    return resize or round(image_size * 256 / 224)


def train_transform(image_size: int, mean, std, interpolation: str = "bilinear") -> T.Compose:
    """RandomResizedCrop + horizontal flip (release recipe)."""
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, interpolation=_INTERPOLATION[interpolation]),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def eval_transform(image_size: int, mean, std, interpolation: str = "bilinear", resize: int = 0) -> T.Compose:
    """Resize(256) + CenterCrop(224) for the paper's size."""
    return T.Compose(
        [
            T.Resize(eval_resize(image_size, resize), interpolation=_INTERPOLATION[interpolation]),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
