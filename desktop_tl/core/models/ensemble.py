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


def view(name: str, images: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The images (or maps over them) flipped or turned as the view `name` has it; `inverse` undoes it."""
    if name == "hflip":
        return images.flip(-1)
    if name == "vflip":
        return images.flip(-2)
    if name == "rot90":     # images.rot90(1 or -1, (-2, -1)) spelt as a flip and a transpose, which ONNX tracing has
        return images.flip(-2 if inverse else -1).transpose(-2, -1)
    return images


VIEWS = ("identity", "hflip", "vflip", "rot90")


class Ensemble(nn.Module):
    """`members` averaged (probabilities) over `views` (of VIEWS) of each image."""

    def __init__(self, members: Sequence[nn.Module], views: Sequence[str] = ("identity",)) -> None:
        super().__init__()
        if not members or any(v not in VIEWS for v in views) or not views:
            raise ValueError("an ensemble needs members and known views")
        self.members = nn.ModuleList(members)
        self.views = tuple(views)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        viewed = self._views_of(images)
        total = sum(self._mean_over_views(torch.softmax(member(viewed).float(), dim=1)) for member in self.members)
        return torch.log((total / len(self.members)).clamp_min(1e-12))

    def probabilities_and_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The averaged probabilities and the members' class activation maps (see core.deploy.export), averaged
        over the views (each map turned back to the image's orientation) and the members, from one pass of each
        member. The members' maps must have one size (core.deploy.export.supports_cam checks it)."""
        probabilities, maps, _ = self.outputs(images, maps=True)
        return probabilities, maps

    def outputs(self, images: torch.Tensor, maps: bool = False, features_of: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The averaged probabilities; with `maps`, the averaged class activation maps; with `features_of`,
        that member's pooled features of the images as given (core.models.familiarity reads them), all from
        one pass of each member."""
        viewed = self._views_of(images)
        total, averaged_maps, pooled = None, None, None
        for index, member in enumerate(self.members):
            features = member.forward_features(viewed)
            probabilities = self._mean_over_views(torch.softmax(member.forward_head(features).float(), dim=1))
            total = probabilities if total is None else total + probabilities
            if maps:
                member_maps = torch.einsum("kc,nchw->nkhw", member.get_classifier().weight, features)
                per_view = member_maps.reshape(len(self.views), -1, *member_maps.shape[1:])
                turned_back = torch.stack([view(name, per_view[k], inverse=True)
                                           for k, name in enumerate(self.views)]).mean(0)
                averaged_maps = turned_back if averaged_maps is None else averaged_maps + turned_back
            if index == features_of:
                pooled = self._pooled_identity_view(member, features, images)
        return total / len(self.members), None if averaged_maps is None else averaged_maps / len(self.members), pooled

    def _pooled_identity_view(self, member: nn.Module, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The member's pooled features of the unflipped images: a slice of the pass over every view when the
        identity is one of them, else a pass of its own."""
        if "identity" in self.views:
            chunk = features.reshape(len(self.views), -1, *features.shape[1:])[self.views.index("identity")]
        else:
            chunk = member.forward_features(images)
        return member.forward_head(chunk, pre_logits=True).flatten(1).float()

    def _views_of(self, images: torch.Tensor) -> torch.Tensor:
        """Every view of every image in one batch, view by view: the members run once (one copy of each in an
        exported graph). Turned copies need square images."""
        return torch.cat([view(name, images) for name in self.views]) if len(self.views) > 1 else images

    def _mean_over_views(self, probabilities: torch.Tensor) -> torch.Tensor:
        views = len(self.views)
        return probabilities.reshape(views, -1, probabilities.shape[-1]).mean(0) if views > 1 else probabilities


def ensemble_meta(member_metas: Sequence[dict[str, Any]], views: Sequence[str]) -> dict[str, Any]:
    """What a checkpoint records of an ensemble, to rebuild it: each member's architecture (and a small
    network's input size), and the views."""
    return {"members": [dict(m) for m in member_metas], "views": list(views)}

