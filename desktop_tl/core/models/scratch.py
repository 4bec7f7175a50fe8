"""A small convolutional network trained from scratch: the automatic recipe's check on whether pretraining
helps, and the model it delivers when pretraining does not (see core.training.baseline).

It takes the same input as the run's pretrained model (the same preprocessing, at the plan's size) and
shrinks it to its own small size inside `forward`, so evaluation, export, `predict` and heat maps treat it
like any other run model. Its head is global average pooling + one linear layer, with timm's method names
(`forward_features`, `forward_head`, `get_classifier`), so class activation maps work as for timm models.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from desktop_tl.core.errors import UserError

WIDTHS = (16, 32, 64, 128)


def shrink(images: torch.Tensor, size: int) -> torch.Tensor:
    """The images at `size` x `size` px (bilinear, antialiased; unchanged when they already are)."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class ScratchNet(nn.Module):
    """Input shrunk to `size` px (bilinear, antialiased), four 3x3 convolution blocks (BatchNorm, ReLU,
    max-pool), global average pooling, linear classifier."""

    def __init__(self, classes: int, size: int = 48) -> None:
        super().__init__()
        self.size = int(size)
        layers: list[nn.Module] = []
        channels = 3
        for width in WIDTHS:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last feature map, (N, 128, size/16, size/16)."""
        return self.features(shrink(images, self.size))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, then the classifier (skipped with `pre_logits`)."""
        pooled = features.mean((2, 3))
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))

    def get_classifier(self) -> nn.Linear:
        """The linear classifier (timm's name for it)."""
        return self.classifier


def scratch_from_meta(classes: int, meta: dict[str, Any]) -> ScratchNet:
    """The (untrained) ScratchNet a checkpoint's metadata describes; UserError when its size is damaged."""
    size = meta.get("scratch_size", 48)
    if not isinstance(size, int) or not 16 <= size <= 1024:
        raise UserError("A checkpoint of the run is damaged: its small network's input size is not valid.",
                        "Use the other checkpoint of the run (best or last), or train again.")
    return ScratchNet(classes, size)
