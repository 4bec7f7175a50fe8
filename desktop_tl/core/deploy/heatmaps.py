"""Heat maps of where the model looked, from the class activation maps an exported model returns beside
its probabilities (see `export._WithSoftmax`). Numpy and Pillow only: `predict`, the window's "Try it" and
`predict --heatmaps` compute the same heat map from the same ONNX output, so they agree to the pixel."""

from __future__ import annotations

import numpy as np
from PIL import Image

CAM_OUTPUT = "class_activation"   # the name of the exported model's second output: (images, classes, h, w)
OVERLAY_ALPHA = 0.45


def normalised_heatmap(cam: np.ndarray) -> np.ndarray:
    """One class's activation map (h, w) as 0..1: only what speaks for the class (negative parts are 0),
    divided by its maximum; all zeros when nothing does."""
    positive = np.maximum(np.asarray(cam, dtype=np.float64), 0.0)
    top = float(positive.max()) if positive.size else 0.0
    return positive / top if top > 0 else np.zeros_like(positive)


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """0..1 values as RGB uint8: dark blue (cold) through green and yellow to red (hot)."""
    h = np.clip(heat, 0.0, 1.0)
    red = np.clip(1.5 - np.abs(4 * h - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * h - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * h - 1), 0, 1)
    return (np.stack([red, green, blue], axis=-1) * 255).round().astype(np.uint8)


def overlay(image: Image.Image, cam: np.ndarray) -> Image.Image:
    """The heat map of `cam` (h, w), enlarged to the image (the model's input crop) and laid over it."""
    heat = normalised_heatmap(cam)
    large = Image.fromarray((heat * 255).round().astype(np.uint8)).resize(image.size, Image.Resampling.BILINEAR)
    colours = Image.fromarray(heat_colours(np.asarray(large, dtype=np.float64) / 255.0))
    return Image.blend(image.convert("RGB"), colours, OVERLAY_ALPHA)
