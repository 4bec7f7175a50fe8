"""A two-class run's figures under a newly saved threshold, computed from the scores metrics.json keeps (the
positive class's calibrated probability and the path of every validation and test image): arithmetic, so
that Save threshold answers at once instead of running the model over both splits again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.metrics import compute_metrics
from desktop_tl.core.evaluation.referral import referral_report, risk_coverage_curves
from desktop_tl.core.evaluation.subgroups import run_cautions, test_subgroups
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.core.stored_scores import scores_as_probabilities


def metrics_under_decision(run_dir: Path) -> dict[str, Any] | None:
    """The finished two-class run's figures under the decision (and referral rule) run.json now holds, computed
    from the validation and test scores metrics.json keeps: arithmetic, no model is run, so Save threshold
    answers at once. metrics.json is not changed. None when the stored scores lack the images' paths (a run
    trained by an earlier version): evaluate the run instead."""
    folder = RunFolder(run_dir)
    info, stored = folder.info(), folder.metrics() or {}
    classes = info.classes
    if len(classes) != 2 or info.decision is None or not info.finished:
        return None
    metrics = dict(stored, decision=info.decision.to_dict())
    held_out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("val", "test"):
        figures = stored.get(split) or {}
        scores = figures.get("scores")
        if not figures.get("images"):
            continue
        if not isinstance(scores, dict) or not isinstance(scores.get("paths"), list):
            return None
        labels, probs = scores_as_probabilities(scores["is_positive"], scores["probability"],
                                                classes.index(scores["positive"]))
        metrics[split] = compute_metrics(labels, probs, classes, scores["paths"], decision=info.decision,
                                         positive=scores["positive"])
        held_out[split] = (labels, probs)
    if info.referral is not None and isinstance(stored.get("referral"), dict):
        metrics["referral"] = referral_report(info.referral, info.decision, classes, held_out)
    metrics["risk_coverage"] = risk_coverage_curves(info.decision, classes, held_out)
    try:
        index = folder.index()
    except UserError:        # the dataset moved: the subgroups and cautions stay those stored
        return metrics
    if "test" in held_out:
        labels, probs = held_out["test"]
        metrics["subgroups"] = {"test": test_subgroups(index, stored["test"]["scores"]["paths"], labels, probs,
                                                       classes, info.decision)}
        metrics["cautions"] = run_cautions(stored.get("history") or [], index, classes, metrics["test"],
                                           metrics["subgroups"]["test"])
    return metrics
