"""Calibration: temperature scaling fitted on validation (Guo et al., ICML 2017), expected calibration error
and the reliability diagram's bins. Numpy only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from desktop_tl.core.decision import MAX_TEMPERATURE, MIN_TEMPERATURE, temper

RELIABILITY_BINS = 10
MIN_IMAGES_TO_FIT = 20      # fewer validation images than this: the temperature would be noise


def log_loss(probs: np.ndarray, labels: Sequence[int]) -> float:
    """Mean negative log-likelihood of the true classes."""
    labels = np.asarray(labels, dtype=np.int64)
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-30, 1.0)))) if len(labels) else math.nan


def fit_temperature(probs: np.ndarray, labels: Sequence[int]) -> float:
    """The temperature that minimises the log loss of `labels` under temper(probs, T), by golden-section
    search over log T (the loss is unimodal in it). 1.0 when there is nothing to fit."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return 1.0
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    loss = lambda log_t: log_loss(temper(probs, math.exp(log_t)), labels)  # noqa: E731
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    best = math.exp((lo + hi) / 2)
    return best if loss(math.log(best)) < loss(0.0) else 1.0


def reliability(probs: np.ndarray, labels: Sequence[int], bins: int = RELIABILITY_BINS) -> list[dict[str, Any]]:
    """The reliability diagram: images binned by their top probability, with each bin's mean confidence,
    accuracy and count (empty bins left out)."""
    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels):
        return []
    probs = np.asarray(probs, dtype=np.float64).reshape(len(labels), -1)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    rows = []
    for k in range(bins):
        inside = which == k
        if inside.any():
            rows.append({"lower": k / bins, "upper": (k + 1) / bins, "count": int(inside.sum()),
                         "confidence": float(confidence[inside].mean()),
                         "accuracy": float((predicted[inside] == labels[inside]).mean())})
    return rows


def expected_calibration_error(probs: np.ndarray, labels: Sequence[int], bins: int = RELIABILITY_BINS) -> float | None:
    """Mean gap between confidence and accuracy over the reliability bins, weighted by their counts."""
    rows = reliability(probs, labels, bins)
    total = sum(r["count"] for r in rows)
    if not total:
        return None
    return float(sum(r["count"] * abs(r["confidence"] - r["accuracy"]) for r in rows) / total)
