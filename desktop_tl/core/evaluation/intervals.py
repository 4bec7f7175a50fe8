"""Confidence intervals of proportions measured on few images (accuracy, sensitivity, ...)."""

from __future__ import annotations

import math
from typing import Any


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy measured on `total` images."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(hits: int, of: int) -> dict[str, Any]:
    """A proportion as the figures carry it: value, its Wilson 95% interval and the counts (None when of is 0)."""
    low, high = wilson_interval(hits, of) if of else (None, None)
    return {"value": hits / of if of else None, "ci95": [low, high] if of else None, "hits": hits, "of": of}


def confusion_rates(tp: int, fn: int, fp: int, tn: int) -> dict[str, Any]:
    """Sensitivity, specificity, PPV and NPV of two-class counts, each a `rate`."""
    return {"sensitivity": rate(tp, tp + fn), "specificity": rate(tn, tn + fp),
            "ppv": rate(tp, tp + fp), "npv": rate(tn, tn + fn)}
