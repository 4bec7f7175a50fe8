"""Training augmentation presets (torchvision transforms v2) and evaluation transforms."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from desktop_tl.core.preprocess import Preprocessing, preprocess, to_normalized_array


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


def eval_transform(prep: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """Deterministic evaluation transform: the same numpy code the ONNX predictor runs."""
    return _EvalTransform(prep)


def train_transform(prep: Preprocessing, augment: str) -> Callable[[Image.Image], torch.Tensor]:
    """Training transform for an augmentation preset: `none`, `light` or `strong`."""
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


def augmentation_preview(image: Image.Image, prep: Preprocessing, augment: str, count: int,
                         seed: int = 0) -> list[Image.Image]:
    """`count` augmented versions of `image` as the model would see them (before normalisation)."""
    transform = train_transform(prep, augment)
    mean = np.asarray(prep.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(prep.std, dtype=np.float32)[:, None, None]
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        views = []
        for _ in range(count):
            array = (transform(image).numpy() * std + mean).clip(0, 1)
            views.append(Image.fromarray((array.transpose(1, 2, 0) * 255).round().astype(np.uint8)))
        return views
    finally:
        torch.set_rng_state(generator_state)
