"""Selective prediction: the confidence threshold below which an image is referred to a person, chosen on
held-out predictions (the validation split or out-of-fold predictions) with a finite-sample guarantee.

The method is Geifman and El-Yaniv's selection with guaranteed risk (SGR, "Selective classification for deep
neural networks", NeurIPS 2017): a binary search over the sorted confidences (those that answer enough images
for the target to be reachable at all), where each threshold visited is accepted only when the one-sided Clopper-Pearson upper bound of the error among the images it answers is at or
below the target. The bounds are taken at level (1 - confidence) / visits (a union bound over the thresholds
visited), so with probability at least `confidence` the chosen threshold's error among answered images of the
population the held-out images came from is at most the target. Numpy and the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from desktop_tl.core.decision import Decision, Referral, given_class_probability, predict_labels
from desktop_tl.core.evaluation.intervals import wilson_interval

DEFAULT_TARGET = 0.05
DEFAULT_CONFIDENCE = 0.95
REFUSE_ALL = 1.0 + 1e-6      # a threshold no probability reaches: every image is referred


def _binomial_cdf(errors: int, total: int, p: float) -> float:
    """P(X <= errors) for X ~ Binomial(total, p), summed in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if errors >= total else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(total + 1) - math.lgamma(k + 1) - math.lgamma(total - k + 1) + k * log_p
             + (total - k) * log_q for k in range(errors + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def clopper_pearson_upper(errors: int, total: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson upper bound of an error rate seen as `errors` in `total`:
    the p at which seeing `errors` or fewer has probability alpha (1 when everything was wrong or nothing
    was seen)."""
    if total == 0 or errors >= total:
        return 1.0
    low, high = errors / total, 1.0
    for _ in range(60):            # bisection to well below any figure shown
        middle = (low + high) / 2
        if _binomial_cdf(errors, total, middle) > alpha:
            low = middle
        else:
            high = middle
    return high


def _answered_counts(confidence: np.ndarray, wrong: np.ndarray, threshold: float) -> tuple[int, int]:
    answered = confidence >= threshold
    return int(answered.sum()), int((wrong & answered).sum())


def _search_plan(images: int, target: float, confidence: float) -> tuple[int, int, float]:
    """How many thresholds the search visits, the fewest images a threshold may answer, and each visit's level.

    Answering fewer than `fewest` images cannot meet the target even without an error, so the search leaves
    those thresholds out; the range depends on the count of images alone (not on which are right), so the
    union bound over the visits still holds."""
    for visits in range(1, 64):
        alpha = (1.0 - confidence) / visits
        fewest = math.ceil(math.log(alpha) / math.log1p(-target))
        candidates = images - fewest + 1
        if candidates <= 1 or math.ceil(math.log2(candidates)) <= visits:
            return visits, fewest, alpha
    raise AssertionError("unreachable: 2**63 thresholds")


def images_to_show(target: float, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest held-out images on which an error rate within `target` can be shown at all: even with no
    mistake, fewer leave the upper bound above the target (59 for 5% at 95% confidence, 299 for 1%)."""
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-target))


def choose_referral(labels: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                    decision: Decision | None = None, target: float = DEFAULT_TARGET,
                    confidence: float = DEFAULT_CONFIDENCE, chosen_on: str = "validation") -> Referral:
    """The loosest threshold (most images answered) that SGR accepts for these held-out predictions; when
    none is accepted, a threshold that refers every image."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(labels), len(classes))
    given_confidence = given_class_probability(probs, classes, decision)
    wrong = predict_labels(probs, classes, decision) != labels
    ordered = np.sort(given_confidence)                 # ascending: a lower index answers more images
    visits, fewest, alpha = _search_plan(len(ordered), target, confidence)
    best = REFUSE_ALL
    low, high = 0, len(ordered) - fewest                # index i answers at least len - i images
    for _ in range(visits):
        if low > high:
            break
        middle = (low + high + 1) // 2
        threshold = float(ordered[middle])
        answered, errors = _answered_counts(given_confidence, wrong, threshold)
        if clopper_pearson_upper(errors, answered, alpha) <= target:
            best, high = threshold, middle - 1          # accepted: try to answer more
        else:
            low = middle + 1                            # refused: answer fewer
    return Referral(best, float(target), float(confidence), chosen_on)


TARGETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)     # the referral targets offered (and searched)


def lowest_target(labels: Sequence[int], probs: np.ndarray, classes: Sequence[str], decision: Decision | None = None,
                  confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float] | None:
    """The smallest of TARGETS at which these held-out predictions let the model answer any image, with the share
    of them it would answer; None when even the largest answers none."""
    labels = np.asarray(labels, dtype=np.int64)
    for target in TARGETS:
        if len(labels) < images_to_show(target, confidence):
            continue
        referral = choose_referral(labels, probs, classes, decision, target, confidence)
        if referral.threshold < REFUSE_ALL:
            return target, selective_figures(labels, probs, classes, decision, referral)["coverage"]
    return None


def selective_figures(labels: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                      decision: Decision | None, referral: Referral) -> dict[str, Any]:
    """Coverage (the share answered) and the error among answered images, each with its Wilson 95% interval."""
    labels = np.asarray(labels, dtype=np.int64)
    total = len(labels)
    if not total:
        return {"images": 0, "answered": 0, "coverage": None, "coverage_ci95": None, "errors": 0,
                "error_among_answered": None, "error_ci95": None}
    probs = np.asarray(probs, dtype=np.float64).reshape(total, len(classes))
    given_confidence = given_class_probability(probs, classes, decision)
    wrong = predict_labels(probs, classes, decision) != labels
    answered, errors = _answered_counts(given_confidence, wrong, referral.threshold)
    return {"images": total, "answered": answered, "coverage": answered / total,
            "coverage_ci95": list(wilson_interval(answered, total)), "errors": errors,
            "error_among_answered": errors / answered if answered else None,
            "error_ci95": list(wilson_interval(errors, answered)) if answered else None}


def risk_coverage_curve(labels: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                        decision: Decision | None = None) -> dict[str, list[float]]:
    """The error among answered images against the share answered, at every threshold (strictest first)."""
    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels):
        return {"coverage": [], "error": [], "threshold": []}
    probs = np.asarray(probs, dtype=np.float64).reshape(len(labels), len(classes))
    given_confidence = given_class_probability(probs, classes, decision)
    wrong = (predict_labels(probs, classes, decision) != labels).astype(np.float64)
    order = np.argsort(-given_confidence, kind="stable")
    answered = np.arange(1, len(order) + 1)
    errors = np.cumsum(wrong[order])
    # one point per distinct threshold: the last of each run of equal confidences
    sorted_confidence = given_confidence[order]
    last = np.r_[sorted_confidence[1:] != sorted_confidence[:-1], True]
    return {"coverage": (answered[last] / len(order)).tolist(), "error": (errors[last] / answered[last]).tolist(),
            "threshold": sorted_confidence[last].tolist()}


def referral_report(referral: Referral, decision: Decision | None, classes: Sequence[str],
                    splits: dict[str, tuple[Sequence[int], np.ndarray]]) -> dict[str, Any]:
    """The rule with, per split ("val", "test"), the coverage and the error among answered images, each with its
    interval (metrics.json's "referral")."""
    report: dict[str, Any] = referral.to_dict()
    for name, (labels, probs) in splits.items():
        report[name] = selective_figures(labels, probs, classes, decision, referral)
    return report


def risk_coverage_curves(decision: Decision | None, classes: Sequence[str],
                         splits: dict[str, tuple[Sequence[int], np.ndarray]]) -> dict[str, dict[str, list[float]]]:
    """The risk-coverage curve of each split (metrics.json's "risk_coverage", kept with or without a referral
    rule: it shows what referring the least sure images would give)."""
    return {name: risk_coverage_curve(labels, probs, classes, decision) for name, (labels, probs) in splits.items()}
