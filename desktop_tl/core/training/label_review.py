"""Suspected label errors: training and validation images whose given label disagrees confidently with what
a model that never saw them predicts (confident learning, Northcutt et al., JAIR 2021, the rule the cleanlab
package implements; written out here in a few lines rather than adding cleanlab and pandas to the app).

The pretrained backbone describes each image once (frozen, so it cannot have memorised a wrong label); a
logistic regression fitted on k-1 folds predicts the k-th, so every image gets an out-of-fold probability.
Class j's threshold is the mean out-of-fold probability of j over the images labelled j; an image is
suspect when its given label's probability falls below that label's threshold while another class reaches
its own, ranked by how far the other class leads. The list is saved in the run folder (`label_review.json`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from desktop_tl.core.atomic import atomic_write_json
from desktop_tl.core.data.loaders import ImageDataset, make_loader
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.data.transforms import eval_transform
from desktop_tl.core.errors import UserError
from desktop_tl.core.label_rules import not_for_multi_label
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.models.structure import data_config
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.core.training.probe import pre_logits
from desktop_tl.core.training.probe_fit import FeatureScaling, fit_logistic

REVIEW_FILE = "label_review.json"
FOLDS = 5
L2 = 1e-3


@dataclass(frozen=True)
class Suspect:
    """One image whose label looks wrong: its path in the dataset, the given and the suggested class."""

    path: str
    split: str
    given: str
    suggested: str
    given_probability: float
    suggested_probability: float


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, classes: int, folds: int = FOLDS,
                              seed: int = 0) -> np.ndarray:
    """Each row's class probabilities from a logistic regression fitted without it (stratified k folds)."""
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), dtype=np.int64)
    for k in range(classes):                                # every class spread over the folds
        members = rng.permutation(np.flatnonzero(labels == k))
        fold_of[members] = np.arange(len(members)) % folds
    probs = np.zeros((len(labels), classes))
    x = torch.from_numpy(features)
    for fold in range(folds):
        held = fold_of == fold
        if not held.any() or held.all():
            continue
        scaling = FeatureScaling.of(x[~held])
        weight, bias = fit_logistic(scaling.apply(x[~held]), torch.from_numpy(labels[~held]), classes, L2)
        logits = scaling.apply(x[held]) @ weight.T + bias
        probs[held] = torch.softmax(logits, 1).numpy()
    return probs


def confident_suspects(probs: np.ndarray, labels: np.ndarray) -> list[tuple[int, int]]:
    """(row, suggested class) of the rows confident learning flags, most suspect first."""
    classes = probs.shape[1]
    thresholds = np.array([probs[labels == k, k].mean() if (labels == k).any() else 1.0 for k in range(classes)])
    found = []
    for i, (row, given) in enumerate(zip(probs, labels, strict=True)):
        others = [k for k in range(classes) if k != given and row[k] >= thresholds[k]]
        if row[given] < thresholds[given] and others:
            suggested = max(others, key=lambda k: row[k])
            found.append((float(row[suggested] - row[given]), i, suggested))
    return [(i, k) for _, i, k in sorted(found, reverse=True)]


def _backbone_features(run_dir: Path) -> tuple[np.ndarray, np.ndarray, list[Any], list[str]]:
    folder = RunFolder(run_dir)
    info, index = folder.info(), folder.index()
    if index.multi_label:
        raise not_for_multi_label("Review labels")
    model, _ = create_model(info.config.model, info.config.weights, len(info.classes), info.kept_weights)
    model.eval()
    prep = Preprocessing.from_data_config(data_config(model))
    samples = index.split("train") + index.split("val")
    dataset = ImageDataset(index, samples, eval_transform(prep))
    features, labels, items = [], [], []
    with torch.no_grad():
        for images, batch_labels, batch_items, _ in make_loader(dataset, 32, False, 0, num_workers=0):
            if len(batch_labels):
                features.append(pre_logits(model, images).double().numpy())
                labels.append(batch_labels.numpy())
                items.extend(batch_items.tolist())
    if not features:
        raise UserError("No readable training or validation images to review.", "Check the dataset folder.")
    return np.concatenate(features), np.concatenate(labels), [samples[i] for i in items], info.classes


def review_labels(run_dir: Path) -> list[Suspect]:
    """The suspected label errors of a run's training and validation images, most suspect first; written to
    the run folder as label_review.json."""
    features, labels, samples, classes = _backbone_features(Path(run_dir))
    if min(np.bincount(labels, minlength=len(classes))) < 2:
        raise UserError("Every class needs at least two training or validation images to review the labels.",
                        "Add images to the small classes.")
    probs = out_of_fold_probabilities(features, labels, len(classes), folds=min(FOLDS, int(np.bincount(labels).min())))
    suspects = [Suspect(samples[i].path, samples[i].split, classes[labels[i]], classes[k],
                        round(float(probs[i, labels[i]]), 4), round(float(probs[i, k]), 4))
                for i, k in confident_suspects(probs, labels)]
    atomic_write_json(Path(run_dir) / REVIEW_FILE, {"method": "confident learning, 5-fold logistic regression on "
                                                              "the pretrained backbone's features",
                                                    "reviewed": len(samples),
                                                    "suspects": [asdict(s) for s in suspects]})
    return suspects


def save_decisions(run_dir: Path, decisions: dict[str, dict[str, str]]) -> None:
    """Record the expert's decisions in label_review.json: {path: {"action": "keep" | "relabel" | "exclude",
    "label": class (relabel only)}}. The suspects stay as they were found."""
    path = Path(run_dir) / REVIEW_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    record["decisions"] = decisions
    atomic_write_json(path, record)
