"""Metrics and cautions against hand-computed figures."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_tl.core.evaluation.intervals import wilson_interval
from desktop_tl.core.evaluation.metrics import cautions, compute_metrics, roc_auc

from helpers import planted_inspection_result


def test_metrics_match_hand_computation():
    classes = ["a", "b", "c"]
    y = [0, 0, 0, 1, 1, 2]
    probs = np.array([[.8, .1, .1], [.6, .3, .1], [.2, .7, .1], [.1, .8, .1], [.3, .6, .1], [.2, .2, .6]])
    m = compute_metrics(y, probs, classes, paths=[f"img{i}.png" for i in range(6)])
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert m["per_class"]["a"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    f1_a = 2 * 1 * (2 / 3) / (1 + 2 / 3)
    f1_b = 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b + 1) / 3)
    assert m["per_class"]["c"]["roc_auc"] == pytest.approx(1.0)
    assert m["misclassified"] == [{"path": "img2.png", "true": "a", "predicted": "b", "probability": 0.7,
                                   "probabilities": {"a": 0.2, "b": 0.7, "c": 0.1}}]


def test_roc_auc_with_ties_and_degenerate_cases():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert roc_auc(np.array([0.5, 0.2]), np.array([True, True])) is None


def test_wilson_interval_narrows_with_more_images():
    low10, high10 = wilson_interval(9, 10)
    low1k, high1k = wilson_interval(900, 1000)
    assert low10 < 0.9 < high10 and high10 - low10 > 0.3
    assert high1k - low1k < 0.05


def test_cautions_name_overfitting_imbalance_and_small_test():
    history = [{"epoch": i, "train_loss": 1.0 - 0.3 * i, "train_accuracy": 0.7 + 0.1 * i,
                "val_loss": [0.9, 0.7, 0.8, 0.95][i], "val_accuracy": 0.7} for i in range(4)]
    test = compute_metrics([0, 1, 1], np.array([[.9, .1], [.2, .8], [.3, .7]]), ["x", "y"])
    notes = cautions(history, {"x": 100, "y": 10}, test)
    text = " ".join(notes)
    assert "overfitting" in text and "Validation loss rose" in text
    assert "Class imbalance" in text and "'y'" in text
    assert "only 3 images" in text and "Too few test images" in text
    assert cautions([], {"x": 10, "y": 10}, None) == []


def test_a_class_the_model_often_misses_is_said_in_words_beside_the_majority_baseline():
    test = planted_inspection_result()
    assert test["accuracy"] == pytest.approx(0.82) and test["majority_class"] == "good"
    assert test["majority_baseline"] == pytest.approx(395 / 600)
    notes = cautions([], {"good": 1800, "defective": 900}, test)
    missed = [n for n in notes if "misses" in n]
    assert len(missed) == 1 and "misses 108 of 205 'defective' test images" in missed[0] and "47%" in missed[0]
    assert not any("no better than always" in n for n in notes)   # 82% is well above 66%


def test_accuracy_no_better_than_the_largest_class_is_a_caution():
    test = compute_metrics([0] * 90 + [1] * 10, np.tile([[0.9, 0.1]], (100, 1)), ["normal", "lesion"])
    notes = cautions([], {"normal": 90, "lesion": 10}, test)
    assert any("no better than always answering 'normal', which would score 90%" in n for n in notes)
    assert any("misses 10 of 10 'lesion'" in n for n in notes)
    balanced = compute_metrics([0] * 10 + [1] * 10, np.tile([[0.9, 0.1], [0.1, 0.9]], (10, 1))[
        np.r_[0:20:2, 1:20:2]], ["a", "b"])
    notes = cautions([], {"a": 10, "b": 10}, balanced)
    assert balanced["accuracy"] == 1.0 and not any("misses" in n or "no better" in n for n in notes)


def test_two_class_scores_follow_the_runs_positive_class_not_each_splits_smaller_one():
    probs = np.tile([[0.3, 0.7]], (10, 1))
    labels = [0] * 3 + [1] * 7                        # 'b' is the larger class of this split
    assert compute_metrics(labels, probs, ["a", "b"])["scores"]["positive"] == "a"
    kept = compute_metrics(labels, probs, ["a", "b"], positive="b")["scores"]
    assert kept["positive"] == "b" and kept["is_positive"] == [0] * 3 + [1] * 7 and kept["probability"][0] == 0.7
