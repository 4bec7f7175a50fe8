"""Choosing between candidate models on out-of-fold predictions, beyond the noise of the data.

Every candidate (the pretrained backbone's linear probe, a small network trained from scratch, their
average) has predicted every training and validation image from a model that never saw it. They are
compared paired, image by image on the same folds: the balanced accuracy of each, and of each one's
difference from the reference (the pretrained path), with 95% intervals from a paired bootstrap that
resamples images within each class. A candidate replaces the reference only when its interval of the
difference lies wholly above zero; among several such, the one with the largest gain. An average of other
candidates (an ensemble) qualifies only when it is also better beyond the noise than each candidate it
averages: averaging must pay for itself. A tie within the noise keeps the reference. Numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's out-of-fold figures, and its difference from the reference, with 95% intervals."""

    name: str
    balanced_accuracy: float
    balanced_accuracy_low: float
    balanced_accuracy_high: float
    accuracy: float
    log_loss: float
    gain: float              # balanced accuracy minus the reference's (0 for the reference)
    gain_low: float
    gain_high: float
    over_parts_low: float | None = None   # an average: the lower 95% bound of its gain over the best of its parts


@dataclass(frozen=True)
class Comparison:
    """The candidates' out-of-fold figures and the one chosen."""

    reference: str
    chosen: str
    folds: int
    images: int
    scores: tuple[CandidateScore, ...]
    criterion: str = "balanced accuracy, out-of-fold"

    def score(self, name: str) -> CandidateScore:
        """The figures of one candidate."""
        return next(s for s in self.scores if s.name == name)

    def describe(self, labels: Mapping[str, str] | None = None) -> list[str]:
        """The comparison in words, one line per candidate, then the choice (for the log and metrics)."""
        labels = labels or {}
        lines = [f"Candidates compared by {self.folds}-fold cross-validation over {self.images} images "
                 "(balanced accuracy of out-of-fold predictions, 95% intervals):"]
        for s in self.scores:
            gain = ("" if s.name == self.reference else
                    f", {s.gain:+.1%} vs {labels.get(self.reference, self.reference)} "
                    f"[{s.gain_low:+.1%}, {s.gain_high:+.1%}]")
            parts = ("" if s.over_parts_low is None else
                     "; better than each model it averages beyond the noise" if s.over_parts_low > 0 else
                     "; not better than each model it averages beyond the noise")
            lines.append(f"  {labels.get(s.name, s.name)}: {s.balanced_accuracy:.1%} "
                         f"[{s.balanced_accuracy_low:.1%}, {s.balanced_accuracy_high:.1%}]{gain}{parts}")
        if self.chosen == self.reference:
            lines.append(f"  Chosen: {labels.get(self.reference, self.reference)} (no other candidate is better "
                         "beyond the noise).")
        else:
            lines.append(f"  Chosen: {labels.get(self.chosen, self.chosen)} (better than "
                         f"{labels.get(self.reference, self.reference)} beyond the noise).")
        return lines

    def to_dict(self) -> dict:
        """JSON-ready form (metrics.json, run state)."""
        return dict(asdict(self), scores=[asdict(s) for s in self.scores])

    @classmethod
    def from_dict(cls, data: dict) -> Comparison:
        """Inverse of `to_dict`."""
        scores = tuple(CandidateScore(**s) for s in data["scores"])
        return cls(data["reference"], data["chosen"], data["folds"], data["images"], scores,
                   data.get("criterion", "balanced accuracy, out-of-fold"))


def _class_members(labels: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


def _balanced(correct: np.ndarray, members: list[np.ndarray]) -> float:
    return float(np.mean([correct[m].mean() for m in members]))


def compare_candidates(labels: np.ndarray, probabilities: Mapping[str, np.ndarray], reference: str, folds: int,
                       resamples: int = RESAMPLES, seed: int = 0,
                       parts: Mapping[str, tuple[str, ...]] | None = None) -> Comparison:
    """Compare candidates' out-of-fold probabilities (images x classes, same image order) and choose one
    (see the module docstring). `parts` names, for each average among the candidates, the ones it averages."""
    parts = parts or {}
    labels = np.asarray(labels, dtype=np.int64)
    if reference not in probabilities:
        raise ValueError(f"reference {reference!r} is not among the candidates")
    members = _class_members(labels)
    correct = {name: (np.asarray(p).argmax(1) == labels).astype(np.float64) for name, p in probabilities.items()}
    rng = np.random.default_rng(seed)
    # one draw of images per resample, shared by every candidate: the comparison is paired
    draws = [m[rng.integers(0, len(m), size=(resamples, len(m)))] for m in members]

    def resampled(values: np.ndarray) -> np.ndarray:
        return np.mean([values[d].mean(axis=1) for d in draws], axis=0)

    boot = {name: resampled(c) for name, c in correct.items()}
    tail = (1 - LEVEL) / 2 * 100
    scores = []
    for name, p in probabilities.items():
        diff = boot[name] - boot[reference]
        low, high = np.percentile(boot[name], [tail, 100 - tail])
        gain_low, gain_high = np.percentile(diff, [tail, 100 - tail]) if name != reference else (0.0, 0.0)
        over_parts = (min(float(np.percentile(boot[name] - boot[part], tail)) for part in parts[name])
                      if name in parts else None)
        scores.append(CandidateScore(
            name, _balanced(correct[name], members), float(low), float(high), float(correct[name].mean()),
            mean_log_loss(labels, p),
            _balanced(correct[name], members) - _balanced(correct[reference], members),
            float(gain_low), float(gain_high), over_parts))
    beyond = [s for s in scores if s.name != reference and s.gain_low > 0
              and (s.over_parts_low is None or s.over_parts_low > 0)]
    chosen = max(beyond, key=lambda s: (s.gain, s.gain_low)).name if beyond else reference
    return Comparison(reference, chosen, folds, len(labels), tuple(scores))


def average(probabilities: list[np.ndarray]) -> np.ndarray:
    """The candidates' probabilities averaged (an ensemble's prediction)."""
    return np.mean(np.stack([np.asarray(p, dtype=np.float64) for p in probabilities]), axis=0)


def log_loss_gain(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """How much lower the candidate's log loss is than the reference's on the same images (mean per-image
    difference, nats), and the standard error of that mean: paired, like the comparison above, but on a
    figure that also sees changes in confidence (a refinement such as averaging flipped copies rarely changes
    enough predicted classes to show in balanced accuracy)."""
    difference = _log_losses(labels, reference) - _log_losses(labels, candidate)
    spread = float(difference.std(ddof=1) / np.sqrt(len(labels))) if len(labels) > 1 else float("inf")
    return float(difference.mean()), spread


def _log_losses(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each image's log loss (nats)."""
    labels = np.asarray(labels, dtype=np.int64)
    return -np.log(np.clip(np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels], 1e-12, 1.0))


def mean_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The mean log loss of probabilities (images x classes) for the true labels."""
    return float(_log_losses(labels, probabilities).mean())


def lower_loss_beyond_noise(labels: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> bool:
    """True when the candidate's log loss is lower than the reference's by more than two standard errors."""
    gain, spread = log_loss_gain(labels, reference, candidate)
    return gain > 2 * spread
