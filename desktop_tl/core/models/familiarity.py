"""The unfamiliarity score as part of a model: the pooled features of a pretrained network, and the squared
Mahalanobis distance to the nearest class mean under the statistics of core.evaluation.familiarity, computed
in torch so that the exported ONNX graph carries it (`predict` needs no torch and no statistics file).

The features come from the run's model when it has a pretrained network in it (the model itself, or the
first such member of an ensemble); a model made only of small networks trained from scratch gets the run's
pretrained network beside it for this score alone, because features learnt from a few hundred images say
little about what an image unlike all of them looks like (benchmarks/RESULTS.md, issue 20).
"""

from __future__ import annotations

import torch
from torch import nn

from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.models.scratch import ScratchNet

STATISTICS = ("means", "directions", "inverse_sd", "rest_inverse_variance")
OWN = "model"              # features_from: the model itself, "member N" of an ensemble, or BESIDE
BESIDE = "pretrained network beside the model"


def pooled_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's globally pooled last feature map, before its classifier."""
    return model.forward_head(model.forward_features(images), pre_logits=True).flatten(1).float()


def feature_source(model: nn.Module) -> str | None:
    """Where the run model's features for the score come from (None: a pretrained network must be added)."""
    if isinstance(model, Ensemble):
        return next((f"member {k}" for k, m in enumerate(model.members) if not isinstance(m, ScratchNet)), None)
    return None if isinstance(model, ScratchNet) else OWN


def feature_network(model: nn.Module, source: str, beside: nn.Module | None = None) -> nn.Module:
    """The network whose features the score uses, for a `feature_source` answer (or BESIDE)."""
    if source == OWN:
        return model
    if source.startswith("member "):
        return model.members[int(source.split()[1])]
    if beside is None:
        raise ValueError("the pretrained network beside the model is missing")
    return beside


class UnfamiliarityScore(nn.Module):
    """Squared Mahalanobis distance of L2-normalised pooled features to the nearest class mean.

    Computed as core.evaluation.familiarity.unfamiliarity is, from each image's difference to each class mean
    (images x classes x dims): expanding |x - m|^2 into |x|^2 - 2 x.m + |m|^2 would lose the small distances
    of images close to a class to float32 rounding, which the inverse variances then magnify."""

    def __init__(self, statistics: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for name in STATISTICS:
            self.register_buffer(name, torch.as_tensor(statistics[name], dtype=torch.float32).clone())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
        z = x[:, None, :] - self.means[None, :, :]                      # images x classes x dims
        projected = z @ self.directions                                 # images x classes x kept
        along = (projected * projected).sum(-1)
        weighted = ((projected * self.inverse_sd) ** 2).sum(-1)
        rest = ((z * z).sum(-1) - along).clamp_min(0.0) * self.rest_inverse_variance
        return (weighted + rest).min(dim=1).values


class Detector(nn.Module):
    """What a run keeps to score unfamiliarity (the run folder's detector checkpoint): the score's statistics,
    and the pretrained network beside a model made of small networks only."""

    def __init__(self, score: UnfamiliarityScore, beside: nn.Module | None = None) -> None:
        super().__init__()
        self.score = score
        self.beside = beside
