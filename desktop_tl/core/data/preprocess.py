"""Evaluation preprocessing in numpy and Pillow only, shared by PyTorch evaluation and ONNX predict.

One implementation for both sides is what makes exported models agree with training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Preprocessing:
    """Input size, interpolation, crop and normalisation of a model (timm's data config)."""

    input_size: tuple[int, int]        # (height, width)
    interpolation: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_data_config(cls, cfg: dict[str, Any], image_size: int | None = None,
                         crop_pct: float | None = None) -> Preprocessing:
        """From timm's resolved data config, optionally overriding the square input size and the share of
        the image the centre crop keeps (1.0: the whole image)."""
        _, height, width = cfg["input_size"]
        if image_size:
            height = width = int(image_size)
        interpolation = cfg.get("interpolation") or "bicubic"
        if interpolation not in _INTERPOLATIONS:
            interpolation = "bicubic"
        return cls((int(height), int(width)), interpolation, float(crop_pct or cfg.get("crop_pct") or 1.0),
                   tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in checkpoints and ONNX metadata."""
        return {"input_size": list(self.input_size), "interpolation": self.interpolation,
                "crop_pct": self.crop_pct, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of `to_dict`."""
        return cls(tuple(int(v) for v in data["input_size"]), str(data["interpolation"]),
                   float(data["crop_pct"]), tuple(float(v) for v in data["mean"]),
                   tuple(float(v) for v in data["std"]))

    @property
    def resample(self) -> Image.Resampling:
        """Pillow resampling filter for the interpolation name."""
        return _INTERPOLATIONS[self.interpolation]


def resize_center_crop(image: Image.Image, prep: Preprocessing) -> Image.Image:
    """Resize so the crop covers `crop_pct` of the shorter side, then take the centre crop."""
    height, width = prep.input_size
    scale_h, scale_w = round(height / prep.crop_pct), round(width / prep.crop_pct)
    w, h = image.size
    factor = max(scale_w / w, scale_h / h)
    new_w, new_h = max(width, round(w * factor)), max(height, round(h * factor))
    image = image.resize((new_w, new_h), prep.resample)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def to_normalized_array(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """A float32 CHW array normalised with the model's mean and std (image already cropped)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    array = (array - np.asarray(prep.mean, dtype=np.float32)) / np.asarray(prep.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def preprocess(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """Evaluation preprocessing of one RGB image: resize, centre crop, normalise (CHW float32)."""
    return to_normalized_array(resize_center_crop(image, prep), prep)
