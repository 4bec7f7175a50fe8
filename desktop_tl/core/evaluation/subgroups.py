"""Figures per subgroup (site, scanner, modality, ...): does the model work as well for each? Numpy only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.decision import Decision, predict_labels
from desktop_tl.core.evaluation.intervals import wilson_interval
from desktop_tl.core.evaluation.metrics import balanced_accuracy, cautions

SMALL_GROUP = 20          # fewer test images than this: a caution, the figure is too uncertain to compare
MAX_VALUES = 30           # an attribute with more distinct values is an identifier, not a subgroup


def subgroup_figures(labels: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                     values: Sequence[str | None], decision: Decision | None = None) -> dict[str, dict[str, Any]]:
    """Per value of one attribute: images, accuracy with its 95% interval, balanced accuracy, and for two
    classes the sensitivity of the positive class (the decision's, else the second)."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = predict_labels(probs, classes, decision)
    positive = list(classes).index(decision.positive) if decision else len(classes) - 1
    figures: dict[str, dict[str, Any]] = {}
    for value in sorted({v for v in values if v}):
        inside = np.array([v == value for v in values])
        y, p = labels[inside], predicted[inside]
        correct = int((y == p).sum())
        low, high = wilson_interval(correct, len(y))
        row: dict[str, Any] = {"images": int(len(y)), "accuracy": correct / len(y), "accuracy_95ci": [low, high],
                               "balanced_accuracy": balanced_accuracy(y, p, len(classes))}   # y is never empty
        if len(classes) == 2:
            positives = y == positive
            row["positive"] = classes[positive]
            row["sensitivity"] = float((p[positives] == positive).mean()) if positives.any() else None
            row["positives"] = int(positives.sum())
        figures[value] = row
    return figures


def subgroup_report(labels: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                    attributes: Sequence[dict[str, str]], decision: Decision | None = None) -> dict[str, Any]:
    """Figures per value of every attribute the images carry (attributes with too many values left out)."""
    names = sorted({name for a in attributes for name in a})
    report = {}
    for name in names:
        values = [a.get(name) for a in attributes]
        if 2 <= len({v for v in values if v}) <= min(MAX_VALUES, len(values) / 2):   # groups, not identifiers
            report[name] = subgroup_figures(labels, probs, classes, values, decision)
    return report


def test_subgroups(index: DatasetIndex, paths: list[str], labels: np.ndarray, probs: np.ndarray,
                   classes: list[str], decision: Decision | None) -> dict[str, Any]:
    """The test figures per value of each subgroup attribute of the images (CSV columns, DICOM tags)."""
    by_path = {sample.path: dict(sample.attributes) for sample in index.samples}
    return subgroup_report(labels, probs, classes, [by_path.get(p, {}) for p in paths], decision)


def run_cautions(history: Sequence[dict[str, float]], index: DatasetIndex, classes: Sequence[str],
                 test: dict[str, Any], test_subgroup_report: dict[str, Any]) -> list[str]:
    """A run's plain-language cautions: those of its history, class sizes and test figures, then its subgroups'."""
    counts = index.counts()
    return (cautions(history, {c: counts[c]["train"] for c in classes}, test)
            + subgroup_cautions(test_subgroup_report))


def subgroup_cautions(report: dict[str, Any]) -> list[str]:
    """Plain warnings: groups too small to judge, and groups where the model does clearly worse."""
    notes = []
    for name, groups in report.items():
        small = [value for value, row in groups.items() if row["images"] < SMALL_GROUP]
        if small:
            notes.append(f"By {name}: {', '.join(repr(v) for v in small)} have fewer than {SMALL_GROUP} test images "
                         "each; their figures are too uncertain to compare.")
        for value, row in groups.items():
            others = [r for v, r in groups.items() if v != value and r["images"] >= SMALL_GROUP]
            if row["images"] >= SMALL_GROUP and others and row["accuracy_95ci"][1] < min(
                    r["accuracy"] for r in others):
                notes.append(f"By {name}: the model does worse on {value!r} (accuracy {row['accuracy']:.0%}, 95% "
                             f"interval up to {row['accuracy_95ci'][1]:.0%}) than on the other groups.")
    return notes
