"""The end-of-run stage that fits the check for unfamiliar images (core.evaluation.familiarity): features of
the training images give the statistics, held-out features the threshold, and both go to the run folder's
detector file, from which the export builds the score into the ONNX graph.

Held-out means the validation split when the model trained on the training split alone; when it trained on
training and validation images together (cross-validation chose it, or it was refitted on them), each image
is scored under statistics fitted without its fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from desktop_tl.core.data.loaders import ImageDataset
from desktop_tl.core.data.transforms import eval_transform
from desktop_tl.core.decision import Familiarity
from desktop_tl.core.evaluation.familiarity import (
    DEFAULT_FLAGGED_SHARE,
    MIN_IMAGES,
    choose_familiarity,
    cross_fitted_scores,
    fit_statistics,
    unfamiliarity,
)
from desktop_tl.core.evaluation.intervals import wilson_interval
from desktop_tl.core.evaluation.splits import dataset_outputs
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.models.familiarity import (
    BESIDE,
    Detector,
    UnfamiliarityScore,
    feature_network,
    feature_source,
    pooled_features,
)
from desktop_tl.core.runs.detector_file import save_detector
from desktop_tl.core.runs.folder import DETECTOR_FILE
from desktop_tl.core.training.session import TrainingSession

CROSS_FITTED = "training and validation images, each scored under statistics fitted without its fold"


@dataclass(frozen=True)
class FittedDetector:
    """The rule, what metrics.json says of it, and the test images' scores by path."""

    rule: Familiarity
    report: dict[str, Any]
    test_scores: dict[str, float]


def split_features(network: nn.Module, s: TrainingSession, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pooled features, labels and paths of the readable images of a split."""
    network.eval()
    dataset = ImageDataset(s.index, s.index.split(split), eval_transform(s.prep))
    features, labels, items = dataset_outputs(lambda images: pooled_features(network, images), dataset, s.device,
                                              max(s.batch_size, 32), s.workers(), s.amp_dtype)
    return features.astype(np.float64), labels, [dataset.samples[i].path for i in items]


def fit_detector(s: TrainingSession, flagged_share: float = DEFAULT_FLAGGED_SHARE) -> FittedDetector | None:
    """Fit and save the check for unfamiliar images of the run's delivered model (None when there are too few
    training images for the statistics to mean anything)."""
    classes = len(s.info.classes)
    source = feature_source(s.model)
    beside = None
    if source is None:      # small networks only: the run's pretrained network looks at the images
        beside = create_model(s.cfg.model, s.cfg.weights, classes, s.info.kept_weights)[0].to(s.device).eval()
        source = BESIDE
    network = feature_network(s.model, source, beside)
    train_f, train_y, train_paths = split_features(network, s, "train")
    val_f, val_y, val_paths = split_features(network, s, "val")
    trained_on_all = bool((s.state.get("cross_validation") or {}).get("trained_on_all") or s.state.get("refit"))
    if trained_on_all:
        fold_of = s.fold_of()
        pooled_f = np.concatenate([train_f, val_f]) if len(val_f) else train_f
        pooled_y = np.concatenate([train_y, val_y])
        if len(pooled_y) < MIN_IMAGES:
            return None
        folds = np.array([fold_of[p] for p in train_paths + val_paths])
        held_out, chosen_on = cross_fitted_scores(pooled_f, pooled_y, folds, classes), CROSS_FITTED
        statistics = fit_statistics(pooled_f, pooled_y, classes)
    else:
        if len(train_y) < MIN_IMAGES or len(val_y) == 0:
            return None
        statistics = fit_statistics(train_f, train_y, classes)
        held_out, chosen_on = unfamiliarity(statistics, val_f), "validation"
    rule = choose_familiarity(held_out, flagged_share, chosen_on)
    save_detector(s.info.run_dir / DETECTOR_FILE,
                  Detector(UnfamiliarityScore({k: torch.from_numpy(v) for k, v in statistics.items()}), beside),
                  {"features_from": source, "beside_arch": s.cfg.model, "classes": s.info.classes})
    test_f, _, test_paths = split_features(network, s, "test")
    test_scores = unfamiliarity(statistics, test_f) if len(test_f) else np.zeros(0)
    flagged = int((test_scores > rule.threshold).sum())
    report = {**rule.to_dict(), "features_from": source, "held_out_images": len(held_out),
              "test": {"images": len(test_scores), "flagged": flagged,
                       "share": flagged / len(test_scores) if len(test_scores) else None,
                       "ci95": list(wilson_interval(flagged, len(test_scores))) if len(test_scores) else None}}
    return FittedDetector(rule, report, dict(zip(test_paths, test_scores.tolist(), strict=True)))

