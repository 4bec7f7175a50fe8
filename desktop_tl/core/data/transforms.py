"""Training augmentation (presets, and the automatic recipe's own) and evaluation transforms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torchvision.transforms import v2

from desktop_tl.core.data.preprocess import Preprocessing, preprocess, to_normalized_array


class _EvalTransform:
    """Picklable (loader workers start by spawn on Windows and macOS) evaluation transform."""

    def __init__(self, prep: Preprocessing) -> None:
        self.prep = prep

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess(image, self.prep))


class _AugmentTransform:
    """Picklable training transform: a torchvision v2 pipeline, then normalisation."""

    def __init__(self, pipeline: v2.Compose, prep: Preprocessing) -> None:
        self.pipeline, self.prep = pipeline, prep

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(to_normalized_array(self.pipeline(image), self.prep))


LIGHT_CROP_SCALE = (0.6, 1.0)           # `light`: random resized crop of 60-100% of the area, then a flip
CROP_RATIO = (3 / 4, 4 / 3)
FLIPS = ("fixed", "mirror", "free")     # none; left-right mirror; the 8 flips and 90-degree rotations
JITTER = 0.15                           # colour jitter: brightness, contrast and saturation within +-15%


@dataclass(frozen=True)
class CropFlip:
    """A random resized crop, flips as the data allows, and optionally light colour jitter."""

    crop_scale: tuple[float, float]
    flips: str = "mirror"
    colour_jitter: bool = False


LIGHT = CropFlip(LIGHT_CROP_SCALE, "mirror", False)


def random_resized_box(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
                       ratio: tuple[float, float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of a random crop of `scale` of the area and `ratio` aspect,
    the way torchvision's RandomResizedCrop draws it (10 tries, then the centre crop of the nearest ratio)."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        crop_w, crop_h = round(np.sqrt(target * aspect)), round(np.sqrt(target / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            return int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1)), crop_h, crop_w
    aspect = width / height
    crop_h, crop_w = ((height, round(height * ratio[1])) if aspect > ratio[1] else
                      (round(width / ratio[0]), width) if aspect < ratio[0] else (height, width))
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


_DIHEDRAL = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_90,
             Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
             Image.Transpose.TRANSVERSE)


class CachedCropFlipAugment:
    """Picklable: a `CropFlip` on a uint8 HxWx3 array (a decode-cache entry) in a single resampling step,
    with its own generator seeded per item: Pillow resizes straight from the random crop box, then flips
    (and rotates) as allowed, then jitters colour. A third of the cost of a general torchvision pipeline,
    which matters when loader workers share the CPU with the model (small inputs, few cores)."""

    takes_seed = True

    def __init__(self, prep: Preprocessing, spec: CropFlip) -> None:
        if spec.flips not in FLIPS:
            raise ValueError(f"unknown flips {spec.flips!r}")
        self.prep, self.spec = prep, spec

    def __call__(self, entry: np.ndarray, seed: int | None = None) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        top, left, crop_h, crop_w = random_resized_box(rng, entry.shape[0], entry.shape[1], self.spec.crop_scale)
        height, width = self.prep.input_size
        image = Image.fromarray(entry).resize((width, height), self.prep.resample,
                                              box=(left, top, left + crop_w, top + crop_h))
        if self.spec.flips == "mirror" and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        elif self.spec.flips == "free":
            move = _DIHEDRAL[int(rng.integers(0, 8))]
            image = image if move is None else image.transpose(move)
            if image.size != (width, height):      # a quarter turn of a non-square input
                image = image.resize((width, height), self.prep.resample)
        if self.spec.colour_jitter:
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                image = enhance(image).enhance(float(rng.uniform(1 - JITTER, 1 + JITTER)))
        return torch.from_numpy(to_normalized_array(image, self.prep))


class DecodedCropFlipAugment:
    """Picklable: `CachedCropFlipAugment` on a decoded image, through the same resize a decode-cache entry gets,
    so a run gives the same result with or without the decode cache."""

    takes_seed = True

    def __init__(self, prep: Preprocessing, spec: CropFlip) -> None:
        self.inner = CachedCropFlipAugment(prep, spec)

    def __call__(self, image: Image.Image, seed: int | None = None) -> torch.Tensor:
        from desktop_tl.core.data.decode_cache import decode_entry

        return self.inner(decode_entry(image, self.inner.prep), seed)


def eval_transform(prep: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """Deterministic evaluation transform: the same numpy code the ONNX predictor runs."""
    return _EvalTransform(prep)


def train_transform(prep: Preprocessing, augment: str | CropFlip) -> Callable[[Image.Image], torch.Tensor]:
    """Training transform for an augmentation preset (`none`, `light` or `strong`) or a `CropFlip`."""
    if isinstance(augment, CropFlip):
        return DecodedCropFlipAugment(prep, augment)
    if augment == "none":
        return eval_transform(prep)
    interpolation = v2.InterpolationMode(prep.interpolation)
    if augment == "light":
        ops = [v2.RandomResizedCrop(prep.input_size, scale=LIGHT_CROP_SCALE, ratio=CROP_RATIO,
                                    interpolation=interpolation),
               v2.RandomHorizontalFlip()]
    else:
        ops = [v2.RandomResizedCrop(prep.input_size, scale=(0.3, 1.0), interpolation=interpolation),
               v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
               v2.TrivialAugmentWide(interpolation=interpolation)]
    return _AugmentTransform(v2.Compose(ops), prep)


def augmentation_preview(image: Image.Image, prep: Preprocessing, augment: str | CropFlip, count: int,
                         seed: int = 0) -> list[Image.Image]:
    """`count` augmented versions of `image` as the model would see them (before normalisation)."""
    transform = train_transform(prep, augment)
    seeded = getattr(transform, "takes_seed", False)
    mean = np.asarray(prep.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(prep.std, dtype=np.float32)[:, None, None]
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        views = []
        for k in range(count):
            array = ((transform(image, seed + k) if seeded else transform(image)).numpy() * std + mean).clip(0, 1)
            views.append(Image.fromarray((array.transpose(1, 2, 0) * 255).round().astype(np.uint8)))
        return views
    finally:
        torch.set_rng_state(generator_state)
