"""What a model promised before its trial: its held-out figures as counts, carried in the ONNX metadata
(`held_out_counts`) so that `desktop-tl monitor` can set the realised figures beside them without the run
folder. Counts, not rates: the monitor draws the intervals (core.evaluation.trial). Numpy only."""

from __future__ import annotations

from typing import Any

from desktop_tl.core.decision import Decision, predict_labels
from desktop_tl.core.stored_scores import outcome_counts, split_probabilities

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
    return {"split": split, **outcome_counts(labels, predicted, classes, decision.positive if decision else None)}
