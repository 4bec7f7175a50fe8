"""What the anytime rounds bought a run: its first fine-tuned network alone against the delivered average of
several (core.training.members), on the run's validation and test splits, paired on the same images.

For a two-class run each model gets its own threshold chosen on validation by balanced accuracy (before
calibration); the figures are the mean log loss, the ROC AUC of the positive (smaller) class, and at that
threshold the sensitivity, specificity and balanced accuracy on the test split.

    python benchmarks/member_effect.py RUN
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.decision import choose_threshold, positive_class
from desktop_tl.core.evaluation.metrics import roc_auc
from desktop_tl.core.evaluation.selection import mean_log_loss
from desktop_tl.core.evaluation.splits import predict_split
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.runs.folder import load_index
from desktop_tl.core.runs.trained import model_from_checkpoint


def figures(model, index, prep, classes) -> dict:
    """Validation and test figures of one model (see the module docstring)."""
    (vp, vl, _), (tp, tl, _) = (predict_split(model, index, s, prep, classes, torch.device("cpu")) for s in ("val", "test"))
    pos = positive_class(np.bincount([s.label for s in index.split("train")], minlength=len(classes)))
    threshold = choose_threshold(vl, vp, pos)
    called, positive = tp[:, pos] >= threshold, tl == pos
    sensitivity, specificity = (called & positive).sum() / positive.sum(), (~called & ~positive).sum() / (~positive).sum()
    return {"val_log_loss": round(mean_log_loss(vl, vp), 4), "test_log_loss": round(mean_log_loss(tl, tp), 4),
            "test_auc": round(roc_auc(tp[:, pos], positive), 4), "threshold": round(float(threshold), 3),
            "sensitivity": round(float(sensitivity), 3), "specificity": round(float(specificity), 3),
            "balanced_accuracy": round(float(sensitivity + specificity) / 2, 3)}


def main() -> int:
    run = Path(sys.argv[1])
    model, meta = model_from_checkpoint(run)
    if not isinstance(model, Ensemble) or len(model.members) < 2:
        print("The run's model is one network: nothing to compare.")
        return 1
    index, prep, classes = load_index(run), Preprocessing.from_dict(meta["preprocessing"]), meta["classes"]
    if len(classes) != 2:
        print("This comparison is written for two-class runs.")
        return 1
    result = {"first network alone": figures(Ensemble([model.members[0]], model.views), index, prep, classes),
              f"average of {len(model.members)}": figures(model, index, prep, classes)}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
