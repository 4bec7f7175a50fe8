"""An ensemble as one model: the average of its members' probabilities, over the views they were chosen with.

The members see the same preprocessed images (a small network shrinks them itself). The output is the log
of the averaged probabilities, so that a softmax of it (with or without a calibration temperature) gives
the average back, and the ensemble goes wherever a classifier's logits go: evaluation, calibration, ONNX
export as one graph. Test-time augmentation is the same rule over flipped copies of each image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

ENSEMBLE_ARCH = "desktop_tl_ensemble"
VIEW_FLIPS: dict[str, tuple[int, ...]] = {"identity": (), "hflip": (-1,), "vflip": (-2,)}


class Ensemble(nn.Module):
    """`members` averaged (probabilities) over `views` (keys of VIEW_FLIPS) of each image."""

    def __init__(self, members: Sequence[nn.Module], views: Sequence[str] = ("identity",)) -> None:
        super().__init__()
        if not members or any(v not in VIEW_FLIPS for v in views) or not views:
            raise ValueError("an ensemble needs members and known views")
        self.members = nn.ModuleList(members)
        self.views = tuple(views)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total = None
        for view in self.views:
            flips = VIEW_FLIPS[view]
            viewed = images.flip(flips) if flips else images
            for member in self.members:
                probabilities = torch.softmax(member(viewed).float(), dim=1)
                total = probabilities if total is None else total + probabilities
        return torch.log((total / (len(self.views) * len(self.members))).clamp_min(1e-12))


def ensemble_meta(member_metas: Sequence[dict[str, Any]], views: Sequence[str]) -> dict[str, Any]:
    """What a checkpoint records of an ensemble, to rebuild it: each member's architecture (and a small
    network's input size), and the views."""
    return {"members": [dict(m) for m in member_metas], "views": list(views)}

