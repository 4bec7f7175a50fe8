"""Evaluation figures and plain-language cautions, computed with numpy alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from desktop_tl.core.decision import Decision, predict_labels
from desktop_tl.core.evaluation.calibration import expected_calibration_error, reliability
from desktop_tl.core.evaluation.intervals import wilson_interval
from desktop_tl.core.evaluation.operating_point import operating_point


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """Mean recall over the classes present in `labels` (NaN when there are none)."""
    recalls = [float((predicted[labels == k] == k).mean()) for k in range(classes) if (labels == k).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied ranks); None when a side is empty."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def compute_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                    paths: Sequence[str] = (), max_misclassified: int = 200,
                    decision: Decision | None = None, positive: str | None = None) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class figures, confusion matrix, ROC AUC, mistakes.

    `paths` (relative to the dataset root) label the misclassified images. Predictions follow
    `decision` (a two-class threshold) when given, else the most probable class. For two classes the scores
    kept for the ROC view are the decision's positive class, else `positive` (the smaller training class),
    else this split's smaller class.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(y_true), len(classes))
    num_classes = len(classes)
    y_pred = predict_labels(probs, classes, decision)
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    per_class: dict[str, dict[str, Any]] = {}
    recalls, f1s = [], []
    for k, name in enumerate(classes):
        tp = int(matrix[k, k])
        support = int(matrix[k].sum())
        predicted = int(matrix[:, k].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else None
        f1 = (2 * precision * recall / (precision + recall)) if recall and precision + recall > 0 else 0.0
        auc = roc_auc(probs[:, k], y_true == k) if len(y_true) else None
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1 if support else None,
                           "support": support, "roc_auc": auc}
        if support:
            recalls.append(recall)
            f1s.append(f1)
    aucs = [v["roc_auc"] for v in per_class.values() if v["roc_auc"] is not None]
    supports = matrix.sum(axis=1)
    majority = int(supports.argmax()) if len(y_true) else 0
    correct = int(np.trace(matrix))
    total = len(y_true)
    low, high = wilson_interval(correct, total)
    mistakes = []
    for i in np.flatnonzero(y_pred != y_true)[:max_misclassified]:
        mistakes.append({
            "path": paths[i] if i < len(paths) else str(i),
            "true": classes[y_true[i]], "predicted": classes[y_pred[i]],
            "probability": float(probs[i, y_pred[i]]),
            "probabilities": {c: float(probs[i, k]) for k, c in enumerate(classes)},
        })
    return {
        "images": total,
        "accuracy": correct / total if total else None,
        "accuracy_95ci": [low, high] if total else None,
        "majority_class": classes[majority] if total else None,
        "majority_baseline": float(supports[majority] / total) if total else None,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "roc_auc_ovr": float(np.mean(aucs)) if aucs else None,
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class,
        "misclassified": mistakes,
        "decision": decision.to_dict() if decision else None,
    } | _probability_figures(y_true, probs, classes, decision, positive, paths)


def _probability_figures(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str],
                         decision: Decision | None, positive: str | None = None,
                         paths: Sequence[str] = ()) -> dict[str, Any]:
    """Calibration error and reliability bins; for two classes the positive class's scores (the window draws the
    ROC curve and moves the threshold from them; with the images' relative paths, a new threshold's figures are
    computed from them without running the model) and the operating point of the decision; for more classes
    every class's probabilities, for one-vs-rest curves."""
    figures: dict[str, Any] = {"ece": expected_calibration_error(probs, y_true),
                               "reliability": reliability(probs, y_true)}
    if len(classes) == 2 and len(y_true):
        if decision is not None or positive in classes:
            k = list(classes).index(decision.positive if decision is not None else positive)
        else:       # the smaller class of this split is the one whose misses matter (the second on a tie)
            k = 0 if (y_true == 0).sum() < (y_true == 1).sum() else 1
        figures["scores"] = _scores_against_the_rest(classes[k], k, y_true, probs[:, k])
        if len(paths) == len(y_true):
            figures["scores"]["paths"] = list(paths)
        if decision is not None:
            figures["operating_point"] = operating_point(y_true == k, probs[:, k], decision.threshold)
    elif len(classes) > 2 and len(y_true) and len(classes) <= MAX_CLASSES_WITH_SCORES:
        figures["class_scores"] = {"labels": y_true.astype(int).tolist(),
                                   "probabilities": np.round(probs, 5).tolist()}
    return figures


MAX_CLASSES_WITH_SCORES = 50        # one-vs-rest curves in the window; beyond this metrics.json would grow a lot


def one_vs_rest_scores(m: dict[str, Any], classes: Sequence[str], name: str) -> dict[str, Any] | None:
    """The `scores` of one class against the rest, from a split's `class_scores` (for the ROC view); for a
    multi-label split, of one label (its images against those without it, from the split's predictions)."""
    if "per_label" in m and name in classes:
        k = list(classes).index(name)
        rows = m.get("predictions") or []
        return {"positive": name, "is_positive": [int(name in row["labels"]) for row in rows],
                "probability": [float(row["probabilities"][k]) for row in rows]}
    stored = m.get("class_scores")
    if not isinstance(stored, dict) or name not in classes:
        return None
    k = list(classes).index(name)
    return _scores_against_the_rest(name, k, stored["labels"], [row[k] for row in stored["probabilities"]])


def _scores_against_the_rest(name: str, k: int, labels: Sequence[int], probability: Sequence[float]) -> dict[str, Any]:
    """The ROC view's `scores`: class `name` (index `k`) against the rest, with its probability per image."""
    return {"positive": name, "is_positive": [int(label == k) for label in labels],
            "probability": [round(float(v), 6) for v in probability]}


def cautions(history: Sequence[dict[str, float]], train_counts: dict[str, int],
             test_metrics: dict[str, Any] | None) -> list[str]:
    """Plain-language warnings: overfitting, class imbalance, classes the model often misses, accuracy no
    better than always answering the largest class, too few test images."""
    notes = []
    if history:
        last = history[-1]
        gap = last["train_accuracy"] - last["val_accuracy"]
        if gap > 0.15:
            notes.append(f"Possible overfitting: training accuracy ({last['train_accuracy']:.0%}) is far above "
                         f"validation accuracy ({last['val_accuracy']:.0%}). Try more images, stronger "
                         "augmentation, or freezing more layers.")
        val_losses = [h["val_loss"] for h in history]
        train_losses = [h["train_loss"] for h in history]
        if len(history) >= 3 and val_losses[-1] > min(val_losses) * 1.1 and train_losses[-1] < train_losses[-3]:
            notes.append("Validation loss rose while training loss kept falling: the model started to memorise "
                         "the training images. The best checkpoint (lowest validation loss) is used for "
                         "evaluation and export.")
    counts = [n for n in train_counts.values() if n > 0]
    if counts and max(counts) > 3 * min(counts):
        big = max(train_counts, key=train_counts.get)
        small = min((c for c in train_counts if train_counts[c] > 0), key=train_counts.get)
        notes.append(f"Class imbalance: {big!r} has {train_counts[big]} training images, {small!r} only "
                     f"{train_counts[small]}. Accuracy can look good while {small!r} is missed: read balanced "
                     "accuracy and per-class recall, or train with class-weighted loss.")
    if test_metrics and test_metrics.get("images"):
        low, high = test_metrics["accuracy_95ci"]
        n = test_metrics["images"]
        if high - low > 0.1:
            notes.append(f"The test score rests on only {n} images: the true accuracy is plausibly anywhere "
                         f"between {low:.0%} and {high:.0%} (95% interval). Add test images for a firmer figure.")
        notes.extend(_missed_classes(test_metrics))
        baseline = test_metrics.get("majority_baseline")
        if baseline is not None and test_metrics["accuracy"] <= baseline + 0.02:
            notes.append(f"Accuracy {test_metrics['accuracy']:.0%} is no better than always answering "
                         f"{test_metrics['majority_class']!r}, which would score {baseline:.0%} on these test "
                         "images: read balanced accuracy and per-class recall instead.")
        thin = [c for c, v in test_metrics["per_class"].items() if v["support"] < 5]
        if thin:
            notes.append(f"Too few test images for a trustworthy per-class score: {', '.join(thin)} "
                         "(fewer than 5 each).")
    return notes


LOW_SENSITIVITY = 0.7        # a class found less often than this on the test split gets a caution


def _missed_classes(test_metrics: dict[str, Any]) -> list[str]:
    """One sentence per class the model finds in fewer than LOW_SENSITIVITY of its test images (5 or more)."""
    notes = []
    for name, v in test_metrics["per_class"].items():
        if v["support"] >= 5 and v["recall"] is not None and v["recall"] < LOW_SENSITIVITY:
            missed = v["support"] - round(v["recall"] * v["support"])
            notes.append(f"The model misses {missed} of {v['support']} {name!r} test images (it finds "
                         f"{v['recall']:.0%} of them). If missing {name!r} is costly, do not rely on it as it is: "
                         "add images of that class, or choose a lower threshold for it.")
    return notes
