"""The held-out scores metrics.json keeps per split, back to labels and probabilities: for two classes the
positive class's probability per image (`scores`), for more the whole probability rows (`class_scores`).
Numpy only, for the engine's layers that read them (evaluation, export's promise)."""

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
