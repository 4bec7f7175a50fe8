"""The figures of a multi-label model, and the rules it is given (numpy only).

Per label: ROC AUC, and at the label's threshold its sensitivity, specificity, PPV and NPV with 95% Wilson
intervals, and its calibration error. Overall: the share of images whose exact set of labels is right, and
macro and micro F1. Thresholds and temperatures are chosen on validation (`choose_label_rules`); the test split
is only measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from desktop_tl.core.decision import MIN_TEMPERATURE
from desktop_tl.core.evaluation.calibration import MIN_IMAGES_TO_FIT, expected_calibration_error, fit_temperature
from desktop_tl.core.evaluation.intervals import rate
from desktop_tl.core.evaluation.metrics import roc_auc
from desktop_tl.core.evaluation.operating_point import choose_operating_threshold, operating_point
from desktop_tl.core.label_rules import LabelRules

MISSES_WORTH_SAYING = 0.2     # a label whose test sensitivity falls below 1 - this gets a caution
FEW_TEST_IMAGES = 10
MAX_MISTAKES = 200            # images whose set of labels is wrong, kept for the gallery and the report


def _two_columns(p: np.ndarray) -> np.ndarray:
    """One label's probabilities as the two-class table the single-label tools read: [absent, present]."""
    return np.stack([1.0 - p, p], axis=1)


def choose_label_rules(targets: np.ndarray, probabilities: np.ndarray, criterion: str = "youden",
                       target: float | None = None, chosen_on: str = "validation") -> LabelRules:
    """Each label's temperature (fitted when the label has images of both kinds, enough of them) and then its
    threshold on the calibrated probabilities, by `criterion` (core.evaluation.operating_point)."""
    targets = np.asarray(targets) > 0.5
    temperatures, thresholds = [], []
    for k in range(targets.shape[1]):
        present, p = targets[:, k], np.asarray(probabilities[:, k], dtype=np.float64)
        both = 0 < present.sum() < len(present)
        temperature = fit_temperature(_two_columns(p), present.astype(np.int64)) \
            if both and len(present) >= MIN_IMAGES_TO_FIT else 1.0
        if temperature <= MIN_TEMPERATURE * 1.01:     # validation perfectly separated: any sharpening "fits", and
            temperature = 1.0                         # would make the label overconfident on new images
        temperatures.append(float(temperature))
        calibrated = LabelRules((0.5,), (temperature,)).calibrate(p[:, None])[:, 0]
        thresholds.append(float(choose_operating_threshold(present, calibrated, criterion, target)) if both else 0.5)
    words = {"youden": "balanced accuracy", "sensitivity": f"sensitivity of at least {target:.0%}" if target else "",
             "specificity": f"specificity of at least {target:.0%}" if target else ""}.get(criterion, criterion)
    return LabelRules(tuple(thresholds), tuple(temperatures), chosen_on, words)


def multilabel_metrics(targets: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                       rules: LabelRules | None, paths: Sequence[str] = ()) -> dict[str, Any]:
    """The figures of calibrated `probabilities` (images x labels) against 0/1 `targets` (see the module)."""
    truth = np.asarray(targets) > 0.5
    p = np.asarray(probabilities, dtype=np.float64)
    shown = rules.shown(p) if rules else p >= 0.5
    n = len(truth)
    per_label: dict[str, Any] = {}
    f1s, tp_all, fp_all, fn_all = [], 0, 0, 0
    for k, name in enumerate(classes):
        threshold = rules.thresholds[k] if rules else 0.5
        point = operating_point(truth[:, k], p[:, k], threshold)
        tp_all, fp_all, fn_all = tp_all + point["tp"], fp_all + point["fp"], fn_all + point["fn"]
        f1 = _f1(point["tp"], point["fp"], point["fn"])
        if f1 is not None:
            f1s.append(f1)
        per_label[name] = {"images": int(truth[:, k].sum()), "auc": roc_auc(p[:, k], truth[:, k]), "f1": f1,
                           "ece": expected_calibration_error(_two_columns(p[:, k]), truth[:, k].astype(np.int64))
                           if n else None, **point}
    right = (shown == truth).all(axis=1)
    exact = int(right.sum())
    aucs = [v["auc"] for v in per_label.values() if v["auc"] is not None]
    mistakes = [{"path": paths[i] if i < len(paths) else str(i), "true": _set_words(classes, truth[i]),
                 "predicted": _set_words(classes, shown[i]), "probability": float(p[i].max()),
                 "probabilities": {c: float(p[i, k]) for k, c in enumerate(classes)}}
                for i in np.flatnonzero(~right)[:MAX_MISTAKES]]
    return {"images": n, "exact_set_accuracy": rate(exact, n),
            "macro_f1": float(np.mean(f1s)) if f1s else None, "micro_f1": _f1(tp_all, fp_all, fn_all),
            "macro_auc": float(np.mean(aucs)) if aucs else None, "per_label": per_label,
            "misclassified": mistakes, "wrong_sets": n - exact,
            "predictions": [{"path": path, "labels": [c for c, t in zip(classes, row, strict=True) if t],
                             "predicted": [c for c, s in zip(classes, called, strict=True) if s],
                             "probabilities": [round(float(v), 5) for v in probs]}
                            for path, row, called, probs in zip(paths, truth, shown, p)]}


def _set_words(classes: Sequence[str], present: np.ndarray) -> str:
    """A set of labels as the mistakes list names it: ';'-joined, "none" for none of them."""
    return ";".join(c for c, x in zip(classes, present, strict=True) if x) or "none"


def _f1(tp: int, fp: int, fn: int) -> float | None:
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None


def label_cautions(test: dict[str, Any]) -> list[str]:
    """Plain-language cautions per label from the test figures: labels the model misses often, and labels with
    too few test images to measure."""
    cautions = []
    for name, row in test["per_label"].items():
        found, of = row["tp"], row["tp"] + row["fn"]
        if of == 0:
            cautions.append(f"No test image shows '{name}': its sensitivity cannot be measured.")
            continue
        if found < (1 - MISSES_WORTH_SAYING) * of:
            cautions.append(f"The model misses {of - found} of the {of} test images that show '{name}'.")
        if of < FEW_TEST_IMAGES:
            cautions.append(f"Only {of} test image{'s' * (of != 1)} show{'s' * (of == 1)} '{name}': its figures are "
                            "uncertain (see the intervals).")
    return cautions
