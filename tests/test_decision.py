"""The two-class decision rule: chosen on validation, applied alike by evaluate, predict and the window."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_tl.core.decision import Decision, choose_threshold, positive_class, predict_labels
from desktop_tl.core.evaluation.metrics import compute_metrics

CLASSES = ["defective", "functional"]


def test_threshold_with_a_known_best_balanced_accuracy():
    # positives (class 0) score 0.30-0.39, negatives 0.05-0.14 and one negative at 0.35: every threshold in
    # (0.14, 0.30] finds all positives and 10 of 11 negatives, the best possible; argmax (0.5) finds none.
    pos = np.linspace(0.30, 0.39, 10)
    neg = np.concatenate([np.linspace(0.05, 0.14, 10), [0.35]])
    scores = np.concatenate([pos, neg])
    labels = np.array([0] * 10 + [1] * 11)
    probs = np.stack([scores, 1 - scores], axis=1)
    threshold = choose_threshold(labels, probs, positive=0)
    assert 0.14 < threshold <= 0.30
    predicted = predict_labels(probs, CLASSES, Decision("defective", threshold))
    recall = [(predicted[labels == k] == k).mean() for k in (0, 1)]
    assert recall[0] == 1.0 and recall[1] == pytest.approx(10 / 11)
    assert (predict_labels(probs, CLASSES) == 1).all()                # argmax misses every positive


def test_ties_prefer_the_threshold_nearest_one_half_and_a_missing_class_keeps_one_half():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    assert choose_threshold([0, 0, 1], probs, positive=0) == 0.5      # 0.45 separates as well; 0.5 is nearer
    low = np.array([[0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    assert choose_threshold([0, 0, 1], low, positive=0) == pytest.approx(0.15)   # midway between 0.1 and 0.2
    assert choose_threshold([0, 0, 0], probs, positive=0) == 0.5


def test_positive_is_the_smaller_training_class():
    assert positive_class([100, 40]) == 1 and positive_class([40, 100]) == 0 and positive_class([50, 50]) == 1


def test_metrics_follow_the_decision_and_record_it():
    probs = np.array([[0.3, 0.7], [0.2, 0.8], [0.05, 0.95]])
    decision = Decision("defective", 0.25)
    m = compute_metrics([0, 0, 1], probs, CLASSES, decision=decision)
    assert m["confusion_matrix"] == [[1, 1], [0, 1]] and m["decision"]["threshold"] == 0.25
    assert compute_metrics([0, 0, 1], probs, CLASSES)["confusion_matrix"] == [[0, 2], [0, 1]]


@pytest.mark.parametrize("data", [None, "x", {"positive": "other", "threshold": 0.3},
                                  {"positive": "defective", "threshold": 1.5},
                                  {"positive": "defective", "threshold": True}])
def test_invalid_decisions_are_ignored(data):
    assert Decision.from_dict(data, CLASSES) is None


def test_decision_round_trips_and_needs_two_classes():
    decision = Decision("functional", 0.62)
    assert Decision.from_dict(decision.to_dict(), CLASSES) == decision
    assert Decision.from_json('{"positive": "functional", "threshold": 0.62}', CLASSES) == decision
    assert Decision.from_json("{broken", CLASSES) is None
    assert Decision.from_dict(decision.to_dict(), ["a", "functional", "c"]) is None
