"""What a model promised before its trial: its held-out figures as counts, carried in the ONNX metadata
(`held_out_counts`) so that `desktop-tl monitor` can set the realised figures beside them without the run
folder. Counts, not rates: the monitor draws the intervals (core.evaluation.trial). Numpy only."""

from __future__ import annotations

from typing import Any

from desktop_tl.core.decision import Decision, predict_labels
from desktop_tl.core.stored_scores import split_probabilities

PROMISE_KEY = "held_out_counts"


def held_out_counts(metrics: dict[str, Any] | None, classes: list[str],
                    decision: Decision | None) -> dict[str, Any] | None:
    """The test split's counts under the model's rule (the split nothing was tuned on; the validation split's
    when a run has no test images): images, correct, per class (found, of), and for two classes the
    confusion counts of the positive class. None when the run's metrics hold no stored scores."""
    for split in ("test", "val"):
        found = split_probabilities((metrics or {}).get(split), classes)
        if found is not None:
            break
    else:
        return None
    labels, probs = found
    predicted = predict_labels(probs, classes, decision)
    counts: dict[str, Any] = {
        "split": split, "images": int(len(labels)), "correct": int((predicted == labels).sum()),
        "per_class": {name: [int(((labels == k) & (predicted == k)).sum()), int((labels == k).sum())]
                      for k, name in enumerate(classes)}}
    if len(classes) == 2:
        positive = classes.index(decision.positive) if decision is not None else 1
        is_pos, called = labels == positive, predicted == positive
        counts["positive"] = classes[positive]
        counts.update(tp=int((is_pos & called).sum()), fn=int((is_pos & ~called).sum()),
                      fp=int((~is_pos & called).sum()), tn=int((~is_pos & ~called).sum()))
    return counts
