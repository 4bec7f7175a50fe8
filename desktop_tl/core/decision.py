"""The rules a model carries: its calibration (temperature scaling of the probabilities) and its decision
(argmax, or for two classes a threshold on the positive class).

Numpy only: `predict` (no torch), `evaluate` and the training run apply the same rules, read from the
run folder or from the exported model's metadata (the temperature is also folded into the ONNX softmax).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

_Rule = TypeVar("_Rule")


def _parsed(text: str | None, from_dict: Callable[[Any], _Rule | None]) -> _Rule | None:
    """`from_dict` of the JSON in `text` (ONNX metadata), or None when absent or not JSON."""
    try:
        return from_dict(json.loads(text)) if text else None
    except (ValueError, RecursionError):
        return None


def _is_number(value: Any) -> bool:
    """An int or float from JSON (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Decision:
    """Predict `positive` when its probability is at least `threshold`, else the other class."""

    positive: str            # class name
    threshold: float
    chosen_on: str = "validation"
    criterion: str = "balanced accuracy"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (run.json, metrics.json, ONNX metadata)."""
        return asdict(self)

    def rule(self) -> str:
        """The rule in words (see `rule_text`)."""
        return rule_text(self.positive, self.threshold, self.chosen_on, self.criterion)

    @classmethod
    def from_dict(cls, data: Any, classes: Sequence[str]) -> Decision | None:
        """The decision in `data`, or None when absent or not valid for these classes."""
        if not isinstance(data, dict):
            return None
        positive, threshold = data.get("positive"), data.get("threshold")
        if len(classes) != 2 or positive not in classes or not _is_number(threshold) \
                or not 0.0 <= float(threshold) <= 1.0:
            return None
        return cls(positive, float(threshold), str(data.get("chosen_on", "validation")),
                   str(data.get("criterion", "balanced accuracy")))

    @classmethod
    def from_json(cls, text: str | None, classes: Sequence[str]) -> Decision | None:
        """The decision in a JSON string (ONNX metadata), or None."""
        return _parsed(text, lambda data: cls.from_dict(data, classes))


def rule_text(positive: str, threshold: float, chosen_on: str = "validation",
              criterion: str = "balanced accuracy") -> str:
    """A two-class decision rule in words, from its fields (a Decision, or its dict in metrics.json):
    "'defective' when its probability is at least 0.406 (chosen on the validation split for the best balanced
    accuracy)"."""
    goal = "the best balanced accuracy" if criterion == "balanced accuracy" else criterion
    return f"{positive!r} when its probability is at least {threshold:.3f} (chosen on {source_words(chosen_on)} for {goal})"


OUT_OF_FOLD = "out-of-fold predictions of cross-validation"
"""Where a model trained on train+val took its held-out figures, calibration and threshold from."""
BEFORE_REFIT = "validation predictions of the model before it trained on train+val"
"""The same for a fine-tuned model refitted on train+val (core.training.refit)."""


def held_out_name(val_source: str, short: bool = False) -> str:
    """The name of a run's held-out figures ("val" in metrics.json) by where they come from."""
    if val_source == OUT_OF_FOLD:
        return "cross-validated (out-of-fold)" if short else \
            "val, cross-validated (out-of-fold predictions; the model trained on train+val)"
    if val_source == BEFORE_REFIT:
        return "validation (before the refit)" if short else \
            "val (predicted by the model before it trained again on train+val)"
    return "validation" if short else "val"


def source_words(source: str) -> str:
    """Where a choice was made, in words: "the validation split", or the out-of-fold predictions."""
    return f"the {source} split" if source in ("validation", "train", "test") else f"the {source}"


MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


@dataclass(frozen=True)
class Calibration:
    """Calibrated probabilities are softmax(log(p) / temperature), i.e. softmax(logits / temperature);
    the temperature was fitted on the validation split to minimise its log loss."""

    temperature: float
    fitted_on: str = "validation"

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """These probabilities (images x classes), calibrated."""
        return temper(probs, self.temperature)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (run.json, metrics.json, ONNX metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Calibration | None:
        """The calibration in `data`, or None when absent or out of range."""
        if not isinstance(data, dict):
            return None
        t = data.get("temperature")
        if not _is_number(t) or not MIN_TEMPERATURE <= float(t) <= MAX_TEMPERATURE:
            return None
        return cls(float(t), str(data.get("fitted_on", "validation")))

    @classmethod
    def from_json(cls, text: str | None) -> Calibration | None:
        """The calibration in a JSON string (ONNX metadata), or None."""
        return _parsed(text, cls.from_dict)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / temperature), row by row (log(p) equals the logits up to a per-row constant)."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-30, 1.0))
    z = logp / temperature
    z -= z.max(axis=1, keepdims=True) if len(z) else 0.0
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_labels(probs: np.ndarray, classes: Sequence[str], decision: Decision | None = None) -> np.ndarray:
    """Predicted class indices: argmax, or the two-class threshold rule of `decision`."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(classes))
    if decision is None or len(classes) != 2:
        return probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    k = list(classes).index(decision.positive)
    return np.where(probs[:, k] >= decision.threshold, k, 1 - k).astype(np.int64)


def positive_class(train_counts: Sequence[int]) -> int:
    """The class whose misses matter most by default: the smaller one in training (the second on a tie)."""
    return 0 if train_counts[0] < train_counts[1] else 1


def choose_threshold(labels: Sequence[int], probs: np.ndarray, positive: int) -> float:
    """The threshold on the positive class's probability with the best balanced accuracy (Youden's J) on
    these labels; on a tie, the one closest to 0.5. 0.5 when a class is missing."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(probs, dtype=np.float64).reshape(len(labels), -1)[:, positive]
    is_pos = labels == positive
    n_pos, n_neg = int(is_pos.sum()), int((~is_pos).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    distinct = np.unique(scores)
    # midway between neighbouring scores: the rule does not hinge on one validation image's exact value
    candidates = np.concatenate([(distinct[1:] + distinct[:-1]) / 2, [0.5]])
    best, best_key = 0.5, None
    for t in candidates:
        predicted = scores >= t
        balanced = (predicted[is_pos].sum() / n_pos + (~predicted[~is_pos]).sum() / n_neg) / 2
        key = (round(float(balanced), 12), -abs(float(t) - 0.5))
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best


ANSWERED, UNCERTAIN, UNFAMILIAR = "answered", "uncertain", "unfamiliar"
UNFAMILIARITY_OUTPUT = "unfamiliarity"     # the exported graph's output of each image's unfamiliarity score
STATUS_RULES_KEY = "statuses"              # ONNX metadata: the statuses a model can give (absent: made before them)
STATUS_ORDER = (UNFAMILIAR, UNCERTAIN, ANSWERED)   # the first that applies: an unfamiliar image is not answered


@dataclass(frozen=True)
class Referral:
    """Answer an image when the probability of the class the decision gives it is at least `threshold`,
    else refer it to a person ("uncertain"). The threshold was chosen so that a `confidence` upper bound of
    the error among the answered images of `chosen_on` stays at or below `target` (see
    core.evaluation.referral)."""

    threshold: float
    target: float
    confidence: float = 0.95
    chosen_on: str = "validation"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (run.json, metrics.json, ONNX metadata)."""
        return asdict(self)

    def rule(self) -> str:
        """The rule in words."""
        return (f"answer when the probability of the class given is at least {self.threshold:.3f}, else refer the "
                f"image to a person (chosen on {source_words(self.chosen_on)} to keep the error among answered "
                f"images at or below {self.target:.0%} with {self.confidence:.0%} confidence)")

    @classmethod
    def from_dict(cls, data: Any) -> Referral | None:
        """The referral rule in `data`, or None when absent or out of range."""
        if not isinstance(data, dict):
            return None
        values = [data.get(k) for k in ("threshold", "target", "confidence")]
        if not all(_is_number(v) for v in values):
            return None
        threshold, target, confidence = (float(v) for v in values)
        if not (0.0 <= threshold <= 1.0 + 1e-5 and 0.0 < target < 1.0 and 0.5 <= confidence < 1.0):
            return None
        return cls(threshold, target, confidence, str(data.get("chosen_on", "validation")))

    @classmethod
    def from_json(cls, text: str | None) -> Referral | None:
        """The referral rule in a JSON string (ONNX metadata), or None."""
        return _parsed(text, cls.from_dict)


@dataclass(frozen=True)
class Familiarity:
    """An image is unfamiliar when its unfamiliarity score (the squared Mahalanobis distance of its features to
    the nearest class, computed inside the exported graph) exceeds `threshold`, set so that about
    `flagged_share` of held-out images of the training kind are flagged. `score_percentiles` (5th to 95th, every
    5) of those held-out scores let a silent trial see a shift before images cross the threshold (`typicality`)."""

    threshold: float
    flagged_share: float = 0.05
    chosen_on: str = "validation"
    method: str = "mahalanobis"
    score_percentiles: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (run.json, metrics.json, ONNX metadata)."""
        return asdict(self)

    def rule(self) -> str:
        """The rule in words."""
        return (f"an image is unfamiliar when its features lie further from every class than those of all but "
                f"{self.flagged_share:.0%} of the held-out images of the training kind ({source_words(self.chosen_on)})")

    @classmethod
    def from_dict(cls, data: Any) -> Familiarity | None:
        """The rule in `data`, or None when absent or damaged."""
        if not isinstance(data, dict):
            return None
        threshold, share = data.get("threshold"), data.get("flagged_share", 0.05)
        if not all(_is_number(v) for v in (threshold, share)):
            return None
        if not (float(threshold) >= 0.0 and 0.0 < float(share) < 1.0) or threshold != threshold:
            return None
        percentiles = data.get("score_percentiles") or ()
        if not (isinstance(percentiles, (list, tuple)) and all(_is_number(v) for v in percentiles)):
            percentiles = ()
        return cls(float(threshold), float(share), str(data.get("chosen_on", "validation")),
                   str(data.get("method", "mahalanobis")), tuple(sorted(float(v) for v in percentiles)))

    def typicality(self, score: float) -> float | None:
        """The share of the kept percentiles of held-out scores at or above `score`: for images of the training
        kind uniform on {0, 1/m, ..., 1} (m percentiles), mean 1/2; small for images unlike them. None without
        the percentiles (a model exported before they were kept)."""
        if not self.score_percentiles:
            return None
        at_least = len(self.score_percentiles) - bisect.bisect_left(self.score_percentiles, score)
        return at_least / len(self.score_percentiles)

    @classmethod
    def from_json(cls, text: str | None) -> Familiarity | None:
        """The rule in a JSON string (ONNX metadata), or None."""
        return _parsed(text, cls.from_dict)


SET_COVERAGES = (0.9, 0.95)
"""The shares of images whose prediction set must hold the true class (predict --sets 90 or 95)."""


@dataclass(frozen=True)
class PredictionSets:
    """Conformal prediction sets (split conformal prediction): for each coverage, the probability at or above
    which a class joins an image's set, calibrated on held-out predictions so that on images like them the set
    holds the true class at least that often. The most probable class is always in the set."""

    thresholds: dict[str, float]     # coverage ("0.9", "0.95") -> probability threshold
    images: int                      # held-out images it was calibrated on
    chosen_on: str = "validation"

    def rule(self, coverage: float) -> str:
        """The set at `coverage` in words."""
        return (f"prediction sets at {coverage:.0%}: the classes whose probability is at least "
                f"{self.thresholds[f'{coverage:g}']:.3f}, and the most probable one (calibrated on {self.images} "
                f"images, {source_words(self.chosen_on)}, to hold the true class in {coverage:.0%} of cases)")

    def coverages(self) -> list[float]:
        """The coverages the model carries, smallest first."""
        return sorted(float(c) for c in self.thresholds)

    def sets(self, probs: np.ndarray, classes: Sequence[str], coverage: float) -> list[tuple[str, ...]]:
        """Each image's set at `coverage` (one the model carries), most probable class first."""
        threshold = self.thresholds[f"{coverage:g}"]
        probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(classes))
        return [tuple(classes[k] for k in np.argsort(-row, kind="stable") if row[k] >= threshold or k == row.argmax())
                for row in probs]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (run.json, metrics.json, ONNX metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> PredictionSets | None:
        """The sets' rule in `data`, or None when absent or damaged."""
        if not isinstance(data, dict) or not isinstance(data.get("thresholds"), dict):
            return None
        thresholds = {}
        for coverage, threshold in data["thresholds"].items():
            try:
                valid = 0.0 < float(coverage) < 1.0 and _is_number(threshold) and 0.0 <= float(threshold) <= 1.0
            except (TypeError, ValueError):
                valid = False
            if not valid:
                return None
            thresholds[f"{float(coverage):g}"] = float(threshold)
        images = data.get("images", 0)
        if not thresholds or not _is_number(images):
            return None
        return cls(thresholds, int(images), str(data.get("chosen_on", "validation")))

    @classmethod
    def from_json(cls, text: str | None) -> PredictionSets | None:
        """The sets' rule in a JSON string (ONNX metadata), or None."""
        return _parsed(text, cls.from_dict)


def fit_prediction_sets(labels: Sequence[int], probs: np.ndarray, chosen_on: str = "validation",
                        coverages: Sequence[float] = SET_COVERAGES) -> PredictionSets | None:
    """Split conformal calibration on held-out (calibrated) probabilities: the nonconformity of an image is
    1 - p(true class); for coverage 1 - a, the threshold is 1 minus the ceil((n + 1)(1 - a))-th smallest of
    them, which gives the guarantee on exchangeable images. A coverage that `labels` are too few to show
    (n < 1/a - 1) is left out; None when none is left."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return None
    scores = np.sort(1.0 - np.asarray(probs, dtype=np.float64).reshape(n, -1)[np.arange(n), labels])
    thresholds = {}
    for coverage in coverages:
        rank = int(np.ceil((n + 1) * coverage - 1e-9))
        if rank <= n:
            thresholds[f"{coverage:g}"] = round(float(1.0 - scores[rank - 1]), 6)
    return PredictionSets(thresholds, n, chosen_on) if thresholds else None


def given_class_probability(probs: np.ndarray, classes: Sequence[str], decision: Decision | None = None) -> np.ndarray:
    """Each image's probability of the class the decision gives it (its confidence)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(classes))
    given = predict_labels(probs, classes, decision)
    return probs[np.arange(len(probs)), given]


def statuses(probs: np.ndarray, classes: Sequence[str], decision: Decision | None = None,
             referral: Referral | None = None, unfamiliarity: np.ndarray | None = None,
             familiarity: Familiarity | None = None) -> list[str]:
    """Each image's status, in one documented order: first the decision gives the class; an image whose
    features are unfamiliar is "unfamiliar"; else one whose given class is less probable than the referral
    threshold is "uncertain"; else "answered". Without a rule, that step never applies."""
    confidence = given_class_probability(probs, classes, decision)
    out = []
    for k, p in enumerate(confidence):
        if familiarity is not None and unfamiliarity is not None and unfamiliarity[k] > familiarity.threshold:
            out.append(UNFAMILIAR)
        elif referral is not None and p < referral.threshold:
            out.append(UNCERTAIN)
        else:
            out.append(ANSWERED)
    return out
