"""The held-out scores metrics.json keeps per split, back to labels and probabilities: for two classes the
positive class's probability per image (`scores`), for more the whole probability rows (`class_scores`); and
the outcome counts a model's promise and a silent trial's realised figures are both made of. Numpy only, for
the engine's layers that read them (evaluation, export's promise)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def scores_as_probabilities(is_positive: Sequence[bool | int], probability: Sequence[float], positive: int
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Stored two-class scores (the positive class's probability per image, whether the image is positive) back
    to labels and the images x 2 probabilities, `positive` being the positive class's index."""
    p = np.asarray(probability, dtype=np.float64)
    probs = np.zeros((len(p), 2))
    probs[:, positive], probs[:, 1 - positive] = p, 1.0 - p
    return np.where(np.asarray(is_positive, dtype=bool), positive, 1 - positive), probs


def split_probabilities(figures: dict[str, Any] | None, classes: Sequence[str]
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """Labels and probabilities of one split's stored figures; None when it kept no scores."""
    figures = figures or {}
    scores, rows = figures.get("scores"), figures.get("class_scores")
    if isinstance(scores, dict) and scores.get("positive") in classes and scores.get("probability"):
        return scores_as_probabilities(scores["is_positive"], scores["probability"],
                                       list(classes).index(scores["positive"]))
    if isinstance(rows, dict) and rows.get("labels") and len(rows["labels"]) == len(rows.get("probabilities") or ()):
        return (np.asarray(rows["labels"], dtype=np.int64),
                np.asarray(rows["probabilities"], dtype=np.float64).reshape(len(rows["labels"]), len(classes)))
    return None


def outcome_counts(labels: Sequence[int], predicted: Sequence[int], classes: Sequence[str],
                   positive: str | None) -> dict[str, Any]:
    """Images, correct, per class (found, of), and for two classes the confusion counts of `positive` (the
    second class when it is not one of them)."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    counts: dict[str, Any] = {
        "images": int(len(labels)), "correct": int((predicted == labels).sum()),
        "per_class": {name: [int(((labels == k) & (predicted == k)).sum()), int((labels == k).sum())]
                      for k, name in enumerate(classes)}}
    if len(classes) == 2:
        k = list(classes).index(positive) if positive in classes else 1
        is_pos, called = labels == k, predicted == k
        counts.update(positive=classes[k], tp=int((is_pos & called).sum()), fn=int((is_pos & ~called).sum()),
                      fp=int((~is_pos & called).sum()), tn=int((~is_pos & ~called).sum()))
    return counts
