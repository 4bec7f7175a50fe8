"""How unlike the training images an image is: the Mahalanobis distance of its features (the model's pooled
last feature map, L2-normalised) to the nearest class mean, under one covariance shared by the classes.

The covariance is probabilistic PCA's (Tipping and Bishop 1999): the leading directions of the features'
spread around their class means, each with its own variance, and one variance for every other direction. It
is well defined with fewer images than feature dimensions, and it is all the exported model carries: class
means and directions, summary statistics that hold no image (see core.models.familiarity for the graph).
The threshold flags a chosen share of held-out images of the training kind. Numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from desktop_tl.core.decision import Familiarity

MAX_DIRECTIONS = 64
DEFAULT_FLAGGED_SHARE = 0.05
MIN_IMAGES = 20          # below this many training images the statistics mean nothing: no rule
# the least variance a direction is given. Real sets' unit-length features leave about 2e-5 to 5e-5 per
# remaining direction (mnist_few, animals, textures, EfficientNet-Lite0); near-identical training images
# leave none, and a distance weighted by its inverse would turn float rounding (1e-12) into whole units
VARIANCE_FLOOR = 1e-5


def normalised(features: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (the distance then ignores how strongly a picture excites the model)."""
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def fit_statistics(features: np.ndarray, labels: Sequence[int], classes: int) -> dict[str, np.ndarray]:
    """Class means, the leading directions of the shared covariance with their inverse standard deviations,
    and the inverse variance of the remaining directions (float32 arrays, as the graph stores them)."""
    x = normalised(features)
    labels = np.asarray(labels, dtype=np.int64)
    dims = x.shape[1]
    means = np.zeros((classes, dims))
    for k in range(classes):
        if (labels == k).any():
            means[k] = x[labels == k].mean(0)
    residuals = x - means[labels]
    _, singular, directions = np.linalg.svd(residuals, full_matrices=False)
    variances = singular ** 2 / len(x)
    # at most half the directions the residuals span, so that the rest's variance is measured, not zero
    kept = max(1, min(MAX_DIRECTIONS, (len(x) - classes) // 2, dims - 1))
    rest = max(float(variances[kept:].sum()) / (dims - kept), VARIANCE_FLOOR)
    leading = np.maximum(variances[:kept], rest)
    return {"means": means.astype(np.float32), "directions": directions[:kept].T.astype(np.float32),
            "inverse_sd": (1.0 / np.sqrt(leading)).astype(np.float32),
            "rest_inverse_variance": np.array([1.0 / rest], dtype=np.float32)}


def unfamiliarity(statistics: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """Each image's squared Mahalanobis distance to its nearest class mean (what the exported graph computes)."""
    x = normalised(features)
    means, directions = statistics["means"].astype(np.float64), statistics["directions"].astype(np.float64)
    z = x[:, None, :] - means[None, :, :]                       # images x classes x dims
    projected = z @ directions                                  # images x classes x kept
    along = (projected ** 2).sum(-1)
    weighted = ((projected * statistics["inverse_sd"]) ** 2).sum(-1)
    rest = np.maximum((z ** 2).sum(-1) - along, 0.0) * float(statistics["rest_inverse_variance"][0])
    return (weighted + rest).min(axis=1)


TYPICALITY_PERCENTILES = np.arange(5, 100, 5)     # 19 interior percentiles of the held-out scores, kept with the rule


def choose_familiarity(heldout_scores: np.ndarray, flagged_share: float = DEFAULT_FLAGGED_SHARE,
                       chosen_on: str = "validation") -> Familiarity:
    """The threshold that flags at most `flagged_share` of images of the training kind, on average: the
    ceil((n + 1)(1 - share))-th smallest of n held-out scores (the split-conformal quantile; the plain sample
    quantile flags more than the share on new images when n is small: 13.5% instead of 10% of 2,000 new
    animal silhouettes with 60 held-out images, benchmarks/RESULTS.md)."""
    ordered = np.sort(np.asarray(heldout_scores, dtype=np.float64))
    rank = min(len(ordered), math.ceil((len(ordered) + 1) * (1.0 - flagged_share)))
    percentiles = tuple(float(v) for v in np.percentile(ordered, TYPICALITY_PERCENTILES))
    return Familiarity(float(ordered[rank - 1]), float(flagged_share), chosen_on, score_percentiles=percentiles)


def cross_fitted_scores(features: np.ndarray, labels: Sequence[int], folds: Sequence[int], classes: int) -> np.ndarray:
    """Each image's unfamiliarity under statistics fitted without its fold (held-out scores for the threshold
    when every image trained the model)."""
    labels, folds = np.asarray(labels, dtype=np.int64), np.asarray(folds, dtype=np.int64)
    scores = np.zeros(len(labels))
    for fold in np.unique(folds):
        inside = folds == fold
        scores[inside] = unfamiliarity(fit_statistics(features[~inside], labels[~inside], classes), features[inside])
    return scores

