"""The rules a multi-label model carries: each label's calibration (a temperature on its logit) and threshold.

A multi-label model gives one sigmoid probability per label; an image shows every label whose (calibrated)
probability reaches that label's threshold, and none when no label does. The thresholds are chosen on the
validation split, by the same rule as a two-class operating point (Youden's J: the best balanced accuracy,
unless a target sensitivity or specificity is asked for). Numpy only: `predict` (no torch), `evaluate` and the
training run apply the same rules, read from the run folder or the exported model's metadata (the
temperatures are also folded into the ONNX graph's sigmoids).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from desktop_tl.core.errors import UserError

MULTI_LABEL = "multi_label"      # the task an exported model's metadata names ("task")


@dataclass(frozen=True)
class LabelRules:
    """Per label (in the order of the model's classes): its threshold and its calibration temperature."""

    thresholds: tuple[float, ...]
    temperatures: tuple[float, ...]
    chosen_on: str = "validation"
    criterion: str = "balanced accuracy"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (run.json, metrics.json, ONNX metadata)."""
        return dict(asdict(self), thresholds=list(self.thresholds), temperatures=list(self.temperatures))

    @classmethod
    def from_dict(cls, data: Any, labels: int) -> LabelRules | None:
        """The rules in `data` for `labels` labels, or None when absent or damaged."""
        if not isinstance(data, dict):
            return None
        thresholds, temperatures = data.get("thresholds"), data.get("temperatures")
        if not (isinstance(thresholds, list) and isinstance(temperatures, list)
                and len(thresholds) == len(temperatures) == labels
                and all(_number(t) and 0.0 <= t <= 1.0 for t in thresholds)
                and all(_number(t) and t > 0 for t in temperatures)):
            return None
        return cls(tuple(map(float, thresholds)), tuple(map(float, temperatures)),
                   str(data.get("chosen_on", "validation")), str(data.get("criterion", "balanced accuracy")))

    @classmethod
    def from_metadata(cls, text: str | None, labels: int) -> LabelRules | None:
        """The rules in an exported model's "label_rules" metadata entry, or None."""
        try:
            return cls.from_dict(json.loads(text), labels) if text else None
        except (ValueError, RecursionError):
            return None

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        """Each label's probability with its temperature applied: sigmoid(logit(p) / T)."""
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
        return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / np.asarray(self.temperatures)))

    def shown(self, probabilities: np.ndarray) -> np.ndarray:
        """Which labels each image shows (images x labels, bool): probability at least the label's threshold."""
        return np.asarray(probabilities, dtype=np.float64) >= np.asarray(self.thresholds)

    def words(self, classes: Sequence[str]) -> str:
        """The rule in words, for the log and the report."""
        listed = ", ".join(f"'{name}' at {t:.3f}" for name, t in zip(classes, self.thresholds, strict=True))
        return (f"An image shows each label whose probability reaches its threshold ({listed}; chosen on "
                f"{self.chosen_on} for the {self.criterion} of each label), and none of them when no label does.")


def not_for_multi_label(what: str) -> UserError:
    """The message of a single-label tool given a multi-label run or model: it says what works instead."""
    return UserError(f"{what} works with one label per image; this run gives several labels per image.",
                     "Check a multi-label run's labels by its per-label figures and mistakes (`desktop-tl evaluate "
                     "RUN`, the report); label new images in a CSV's 'labels' column and train again.")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
