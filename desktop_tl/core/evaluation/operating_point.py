"""The operating point of a two-class model: sensitivity, specificity, PPV and NPV at a threshold, with
95% intervals; the ROC and precision-recall curves; thresholds chosen by a target sensitivity or
specificity, or by Youden's J. Numpy only, so the window can redraw them live as a marker is dragged."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from desktop_tl.core.decision import Decision, Referral, choose_threshold
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.intervals import confusion_rates
from desktop_tl.core.evaluation.referral import choose_referral
from desktop_tl.core.runs.folder import RunFolder, write_run_info
from desktop_tl.core.stored_scores import scores_as_probabilities

CRITERIA = ("youden", "sensitivity", "specificity", "fixed")


def _split(is_positive: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(is_positive, dtype=bool), np.asarray(scores, dtype=np.float64)


def candidate_thresholds(scores: Sequence[float]) -> np.ndarray:
    """From high to low: just above every score (nothing called), the midpoints between neighbouring distinct
    scores, and the lowest score (everything called)."""
    distinct = np.unique(np.asarray(scores, dtype=np.float64))
    if not len(distinct):
        return np.array([0.5])
    middle = (distinct[1:] + distinct[:-1]) / 2
    return np.concatenate([[np.nextafter(distinct[-1], np.inf)], middle[::-1], [distinct[0]]])


def operating_point(is_positive: Sequence[bool], scores: Sequence[float], threshold: float) -> dict[str, Any]:
    """Counts and rates when "positive" means score >= threshold; each rate with its Wilson 95% interval."""
    pos, s = _split(is_positive, scores)
    called = s >= threshold
    tp, fn = int((called & pos).sum()), int((~called & pos).sum())
    fp, tn = int((called & ~pos).sum()), int((~called & ~pos).sum())
    return {"threshold": float(threshold), "tp": tp, "fn": fn, "fp": fp, "tn": tn,
            **confusion_rates(tp, fn, fp, tn)}


def roc_curve(is_positive: Sequence[bool], scores: Sequence[float]) -> dict[str, list[float]]:
    """False-positive rate, true-positive rate and precision at every candidate threshold (high to low)."""
    pos, s = _split(is_positive, scores)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    thresholds = candidate_thresholds(s)
    called = s[None, :] >= thresholds[:, None]
    tp = (called & pos[None, :]).sum(axis=1)
    fp = (called & ~pos[None, :]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return {"threshold": thresholds.tolist(),
            "fpr": (fp / n_neg if n_neg else np.zeros(len(thresholds))).tolist(),
            "tpr": (tp / n_pos if n_pos else np.zeros(len(thresholds))).tolist(),
            "precision": precision.tolist()}


def choose_operating_threshold(is_positive: Sequence[bool], scores: Sequence[float], criterion: str,
                               target: float | None = None) -> float:
    """The threshold a criterion picks on these (validation) scores:
    - "youden": the best balanced accuracy (sensitivity + specificity - 1);
    - "sensitivity": the highest threshold whose sensitivity is at least `target` (the best specificity then);
    - "specificity": the lowest threshold whose specificity is at least `target`;
    - "fixed": `target` itself."""
    pos, s = _split(is_positive, scores)
    if criterion == "fixed":
        return float(target)
    if criterion == "youden":
        return choose_threshold(pos.astype(np.int64), np.stack([1 - s, s], axis=1), 1)
    if criterion not in ("sensitivity", "specificity") or target is None or not 0.0 < target <= 1.0:
        raise ValueError(f"unknown criterion {criterion!r} or target {target!r}")
    thresholds = candidate_thresholds(s)            # high to low: sensitivity rises, specificity falls
    n_pos, n_neg = max(int(pos.sum()), 1), max(int((~pos).sum()), 1)
    for t in (thresholds if criterion == "sensitivity" else thresholds[::-1]):
        called = s >= t
        if criterion == "sensitivity" and (called & pos).sum() / n_pos >= target - 1e-12:
            return float(t)
        if criterion == "specificity" and (~called & ~pos).sum() / n_neg >= target - 1e-12:
            return float(t)
    return float(thresholds[-1] if criterion == "sensitivity" else thresholds[0])


def criterion_words(criterion: str, target: float | None) -> str:
    """How a threshold was chosen, as `Decision.criterion` records it."""
    if criterion == "sensitivity":
        return f"a sensitivity of at least {target:.0%}"
    if criterion == "specificity":
        return f"a specificity of at least {target:.0%}"
    if criterion == "fixed":
        return "a threshold set by hand"
    return "balanced accuracy"


def choose_decision(run_dir: Path, criterion: str, target: float | None = None) -> Decision:
    """Choose a finished two-class run's threshold on its validation scores (calibrated, from metrics.json;
    no model is run), save it in run.json and return it. `evaluate`, `export` and so `predict` then use it."""
    folder = RunFolder(run_dir)
    info = folder.info()
    metrics = folder.metrics()
    if len(info.classes) != 2:
        raise UserError(f"A threshold applies to two-class models; this run has {len(info.classes)} classes.",
                        "The most probable class is used for more classes.")
    scores = ((metrics or {}).get("val") or {}).get("scores")
    if not info.finished or not isinstance(scores, dict):
        raise UserError("The run has no validation scores to choose a threshold on.",
                        "Let the run finish (or train it again with this version), then choose the threshold.")
    if criterion == "fixed" and not (target is not None and 0.0 <= target <= 1.0):
        raise UserError(f"The threshold must be between 0 and 1, not {target}.", "For example 0.3.")
    if criterion in ("sensitivity", "specificity") and not (target is not None and 0.0 < target <= 1.0):
        raise UserError(f"The target {criterion} must be above 0 and at most 1, not {target}.", "For example 0.95.")
    is_positive = [bool(v) for v in scores["is_positive"]]
    threshold = choose_operating_threshold(is_positive, scores["probability"], criterion, target)
    decision = Decision(scores["positive"], round(threshold, 6), "validation", criterion_words(criterion, target))
    info.decision = decision
    if info.referral is not None:     # the decision gives the class first; the referral reads its probability
        info.referral = _referral_under(decision, info.classes, is_positive, scores["probability"], info.referral)
    write_run_info(info)
    return decision


def _referral_under(decision: Decision, classes: list[str], is_positive: list[bool], probability: list[float],
                    referral: Referral) -> Referral:
    """The referral threshold chosen again, with the same target and on the same held-out scores, for a new
    decision (the class each image is given, and so its confidence, may change with the threshold)."""
    labels, probs = scores_as_probabilities(is_positive, probability, classes.index(decision.positive))
    return choose_referral(labels, probs, classes, decision, referral.target, referral.confidence, referral.chosen_on)
