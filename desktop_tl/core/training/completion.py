"""The end of a run: the calibration and the decision rule chosen on validation, then the test split,
evaluated once.

The probabilities are calibrated by temperature scaling fitted on the validation split (stored in run.json,
folded into the exported model's softmax), and the threshold below is chosen on the calibrated ones.

For two classes the automatic recipe chooses the threshold on the positive (smaller) class's probability
that gives the best balanced accuracy on the validation split; it is stored in run.json, applied to the
validation and test figures, carried into the exported model and applied by `predict`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from desktop_tl.core.atomic import atomic_write_json
from desktop_tl.core.decision import (
    BEFORE_REFIT,
    OUT_OF_FOLD,
    Calibration,
    Decision,
    PredictionSets,
    Referral,
    choose_threshold,
    fit_prediction_sets,
    positive_class,
    predict_labels,
    source_words,
    statuses,
)
from desktop_tl.core.evaluation.calibration import MIN_IMAGES_TO_FIT, expected_calibration_error, fit_temperature
from desktop_tl.core.evaluation.intervals import wilson_interval
from desktop_tl.core.evaluation.metrics import balanced_accuracy, compute_metrics
from desktop_tl.core.evaluation.referral import (
    choose_referral,
    images_to_show,
    lowest_target,
    referral_report,
    risk_coverage_curves,
)
from desktop_tl.core.evaluation.splits import predict_split
from desktop_tl.core.evaluation.subgroups import run_cautions, test_subgroups
from desktop_tl.core.events import Message, TrainEvent
from desktop_tl.core.models.delivered import ENSEMBLE_ARCH
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.models.rebuild import architecture_for
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import METRICS_FILE, write_run_info
from desktop_tl.core.training import distributed
from desktop_tl.core.training.baseline import TransferCheck, test_time_views
from desktop_tl.core.training.detector import fit_detector
from desktop_tl.core.training.session import TrainingSession


def complete(s: TrainingSession) -> Iterator[TrainEvent]:
    """Evaluate the best checkpoint on validation (choosing the decision rule) and test; write metrics.json
    and mark the run finished (rank 0's part under torchrun: the others `wait_for_rank_zero`)."""
    yield from deliver_best(s)
    classes = s.info.classes
    n_val, n_test = len(s.val_set), len(s.index.split("test"))
    cv = s.state.get("cross_validation") or {}
    delivered, refit = cv.get("trained_on_all"), s.state.get("refit")
    what = "the model refitted on train+val" if refit else f"the best checkpoint (epoch {s.state['best_epoch']})"
    yield Message("info", f"Evaluating {what} on {n_val} validation and {n_test} test images…")
    batch = max(s.batch_size, 32)
    if delivered:    # the model learnt from the validation images too: its "validation" is out-of-fold
        val_raw, val_labels, val_paths = (np.asarray(cv["oof"][delivered], dtype=np.float64),
                                          np.asarray(cv["labels"], dtype=np.int64), list(cv["paths"]))
        source = OUT_OF_FOLD
        yield Message("info", f"The model was trained on all {len(val_labels)} training and validation images; its "
                              f"validation figures, calibration and threshold come from the {cv['folds']}-fold "
                              "cross-validation's out-of-fold predictions.")
    elif refit:      # trained again on train+val (core.training.refit): held out are the predictions before
        held_out = refit["held_out"]
        val_raw, val_labels, val_paths = (np.asarray(held_out["probabilities"], dtype=np.float64).reshape(
            len(held_out["labels"]), len(classes)), np.asarray(held_out["labels"], dtype=np.int64),
            list(held_out["paths"]))
        source = BEFORE_REFIT
    else:
        val_raw, val_labels, val_paths = predict_split(s.model, s.index, "val", s.prep, classes, s.device, batch,
                                                       s.cfg.num_workers, s.amp_dtype)
        source = "validation"
    calibration = _calibration(val_labels, val_raw, source)
    val_probs = calibration.apply(val_raw) if calibration else val_raw
    decision = _decision(s, val_labels, val_probs, source)
    if decision is not None:
        yield Message("info", f"Decision threshold: {decision.positive!r} when its probability is at least "
                              f"{decision.threshold:.3f} (chosen on {source} for the best balanced accuracy; "
                              "the most probable class would mean 0.5).")
    metrics: dict[str, Any] = {"classes": classes, "checkpoint": "best", "best_epoch": s.state["best_epoch"],
                               "recipe": s.plan.recipe, "val_source": source}
    if cv:
        metrics["cross_validation"] = {"folds": cv["folds"], "images": len(cv["labels"]),
                                       "comparison": cv.get("comparison"),
                                       "trained_on": "train+val" if delivered or refit else "train",
                                       "refit": {k: v for k, v in refit.items() if k != "held_out"} if refit else None,
                                       "small_networks": cv.get("small_networks"),
                                       "delivered": delivered or s.arch}
    if s.state.get("members"):
        record = s.state["members"]
        metrics["finetuned_networks"] = {"source": "validation", "rounds": record["rounds"],
                                         "averaged": 1 + sum(r["kept"] for r in record["rounds"]),
                                         "ended": record.get("ended")}
    smaller = _smaller_training_class(s) if len(classes) == 2 else None
    metrics["val"] = compute_metrics(val_labels, val_probs, classes, val_paths, decision=decision, positive=smaller)
    test_raw, test_labels, test_paths = predict_split(s.model, s.index, "test", s.prep, classes, s.device, batch,
                                                      s.cfg.num_workers, s.amp_dtype)
    test_probs = calibration.apply(test_raw) if calibration else test_raw
    metrics["test"] = compute_metrics(test_labels, test_probs, classes, test_paths, decision=decision,
                                      positive=smaller)
    metrics["decision"] = decision.to_dict() if decision else None
    referral = _referral(s, val_labels, val_probs, decision, source)
    held_out = {"val": (val_labels, val_probs), "test": (test_labels, test_probs)}
    metrics["risk_coverage"] = risk_coverage_curves(decision, classes, held_out)
    if referral is None and s.cfg.refer_target > 0:
        yield Message("info", _no_referral_words(s.cfg.refer_target, len(val_labels)))
    if referral is not None:
        metrics["referral"] = referral_report(referral, decision, classes, held_out)
        yield Message("info", _referral_words(metrics["referral"]))
        lowest = lowest_target(val_labels, val_probs, classes, decision) if not metrics["referral"]["val"][
            "answered"] else None
        if lowest is not None:
            metrics["referral"]["lowest_target"] = {"target": lowest[0], "coverage": lowest[1]}
            yield Message("info", f"At {lowest[0]:.0%} it would answer {lowest[1]:.0%} of those held-out images: "
                                  f"`desktop-tl evaluate RUN --refer-target {lowest[0]:g}` or the Referral tab of "
                                  "the Evaluation panel chooses it without training again.")
    sets = fit_prediction_sets(val_labels, val_probs, source) if len(classes) > 2 else None
    if sets is not None:
        metrics["prediction_sets"] = prediction_set_report(sets, classes, test_labels, test_probs)
        yield Message("info", _sets_words(metrics["prediction_sets"]))
    yield Message("info", "Fitting the check for images unlike the training images…")
    detector = fit_detector(s)
    metrics["unfamiliar"] = detector.report if detector else None
    if detector is not None:
        test_scores = np.array([detector.test_scores.get(p, 0.0) for p in test_paths])
        found = statuses(test_probs, classes, decision, referral, test_scores, detector.rule)
        metrics["test"]["statuses"] = {status: found.count(status) for status in ("answered", "uncertain",
                                                                                  "unfamiliar")}
        yield Message("info", f"Unfamiliar images: {detector.rule.rule()}; it flags "
                              f"{detector.report['test']['flagged']} of {len(test_scores)} test images.")
    metrics["calibration"] = _calibration_report(calibration, (val_raw, val_labels), (test_raw, test_labels))
    if calibration is not None:
        report = metrics["calibration"]
        yield Message("info", f"Probabilities calibrated: temperature {calibration.temperature:.2f}, fitted on "
                              f"{source_words(source)}; calibration error there {report['val_ece_before']:.3f} -> "
                              f"{report['val_ece_after']:.3f}.")
    metrics["plan"] = s.plan.to_dict()
    metrics["plan_description"] = s.plan.describe()
    metrics["history"] = s.state["history"]
    metrics["near_duplicates"] = {"pairs": len(s.index.near_duplicates),
                                  "across_splits": sum(n.cross_split for n in s.index.near_duplicates),
                                  "test_images_with_a_training_twin_before_the_fix": s.index.near_twins_before_fix}
    metrics["subgroups"] = {"test": test_subgroups(s.index, test_paths, test_labels, test_probs, classes, decision)}
    notes = run_cautions(s.state["history"], s.index, classes, metrics["test"], metrics["subgroups"]["test"])
    check = _transfer_check(s, val_labels, val_probs)
    metrics["transfer_check"] = check.to_dict() if check else None
    if check is not None:
        yield Message("warning" if check.verdict == "hurts" else "info", check.describe())
        if check.verdict != "helps" or check.delivered_scratch:
            notes.append(check.describe())
    metrics["cautions"] = notes
    metrics["skipped_during_training"] = s.state["skipped_images"]
    atomic_write_json(s.info.run_dir / METRICS_FILE, _json_safe(metrics))
    s.info.status, s.info.decision, s.info.calibration = "finished", decision, calibration
    s.info.referral, s.info.familiarity = referral, detector.rule if detector else None
    s.info.prediction_sets = sets
    write_run_info(s.info)
    distributed.barrier()
    yield s.finished(completed=True, stopped_by_user=False, metrics=metrics)


def wait_for_rank_zero(s: TrainingSession) -> Iterator[TrainEvent]:
    """The end of a run on the other ranks under torchrun: rank 0 evaluates alone, they wait for it."""
    distributed.barrier()
    s.info.status = "finished"
    yield s.finished(completed=True, stopped_by_user=False)


def deliver_best(s: TrainingSession) -> Iterator[TrainEvent]:
    """The best checkpoint into the session's model, as the run delivers it (see `_delivered_model`)."""
    best = checkpoint.load_checkpoint(s.info.run_dir / checkpoint.BEST)
    if best.meta.get("arch") != s.describe(s.model)["arch"]:     # a run resumed between the two checkpoints
        s.adopt(architecture_for(best.meta, len(s.info.classes)), best.meta["arch"])
    s.model.load_state_dict(best.model)
    yield from _delivered_model(s)


def _delivered_model(s: TrainingSession) -> Iterator[TrainEvent]:
    """The best checkpoint as the run delivers it: joined by the small network when cross-validation chose
    their average, and averaged over the flipped or turned copies it chose (saved as the best and the last
    checkpoint, so that a run resumed after this point evaluates the same model)."""
    if isinstance(s.model, Ensemble):
        return
    views = test_time_views(s)
    height, width = s.prep.input_size
    if height != width:      # a quarter turn would change the input's shape
        views = tuple(v for v in views if v != "rot90")
    if s.state.get("ensemble") == "pending":
        s.join_member(views)
        s.state["ensemble"] = "joined"
        yield Message("info", "The run's model averages the best fine-tuned model with the small network trained "
                              "from scratch (cross-validation found the average better beyond the noise than either "
                              "alone). It is exported as one model, without heat maps.")
    elif len(views) > 1:
        s.adopt(Ensemble([s.model], views), ENSEMBLE_ARCH)
        yield Message("info", "The run's model averages its predictions over the flipped or turned copies of each "
                              "image that cross-validation found to lower the loss beyond the noise.")
    else:
        return
    s.save(True, None)


def _calibration(labels, probs, source: str = "validation") -> Calibration | None:
    """Temperature scaling fitted on the validation split (or out-of-fold predictions), when it has enough
    images of two classes or more."""
    if len(labels) < MIN_IMAGES_TO_FIT or len(set(labels.tolist())) < 2:
        return None
    return Calibration(fit_temperature(probs, labels), source)


def _calibration_report(calibration: Calibration | None, *splits) -> dict[str, Any] | None:
    """The temperature with the expected calibration error of validation and test before and after it."""
    if calibration is None:
        return None
    report: dict[str, Any] = calibration.to_dict()
    for name, (raw, labels) in zip(("val", "test"), splits, strict=True):
        report[f"{name}_ece_before"] = expected_calibration_error(raw, labels)
        report[f"{name}_ece_after"] = expected_calibration_error(calibration.apply(raw), labels) if len(labels) else None
    return report


def _smaller_training_class(s: TrainingSession) -> str:
    """The two-class run's positive class: the smaller one in training (the second on a tie)."""
    counts = [0, 0]
    for sample in s.train_samples:
        counts[sample.label] += 1
    return s.info.classes[positive_class(counts)]


def _decision(s: TrainingSession, labels, probs, source: str = "validation") -> Decision | None:
    """The two-class threshold rule, when the plan asks for one and validation has both classes."""
    if not s.plan.choose_threshold or len(s.info.classes) != 2 or len(set(labels.tolist())) < 2:
        return None
    positive = s.info.classes.index(_smaller_training_class(s))
    return Decision(s.info.classes[positive], choose_threshold(labels, probs, positive), source)


def _referral(s: TrainingSession, labels, probs, decision: Decision | None, source: str) -> Referral | None:
    """The confidence below which images are referred to a person, when the run asks for one and its held-out
    images can show the target at all (`images_to_show`); else None, and the model answers every image."""
    if s.cfg.refer_target <= 0 or len(labels) < images_to_show(s.cfg.refer_target):
        return None
    return choose_referral(labels, probs, s.info.classes, decision, s.cfg.refer_target, chosen_on=source)


def prediction_set_report(sets: PredictionSets, classes: list[str], test_labels: np.ndarray,
                          test_probs: np.ndarray) -> dict[str, Any]:
    """The sets' rule and, per coverage, how often the test split's sets held the true class (with a 95% Wilson
    interval) and how many classes they named on average."""
    report: dict[str, Any] = sets.to_dict()
    report["test"] = {}
    for coverage in sets.coverages():
        found = sets.sets(test_probs, classes, coverage)
        held = sum(classes[int(y)] in named for y, named in zip(test_labels, found, strict=True))
        n = len(found)
        report["test"][f"{coverage:g}"] = {"images": n, "held_true_class": held,
                                           "coverage": held / n if n else None,
                                           "coverage_ci95": list(wilson_interval(held, n)) if n else None,
                                           "mean_size": float(np.mean([len(f) for f in found])) if n else None}
    return report


def _sets_words(report: dict[str, Any]) -> str:
    """The prediction sets' test figures in one sentence."""
    parts = []
    for coverage, figures in report["test"].items():
        if figures["images"]:
            parts.append(f"at {float(coverage):.0%}, {figures['coverage']:.0%} of {figures['images']} test images' "
                         f"sets held the true class, with {figures['mean_size']:.1f} classes on average")
    return ("Prediction sets (predict --sets), calibrated on " + source_words(report["chosen_on"]) + ": "
            + ("; ".join(parts) if parts else "no test images to check them on") + ".")


def _no_referral_words(target: float, images: int) -> str:
    """Why a run that asked for referral answers every image."""
    return (f"Referral: {images} held-out images are too few to show an error rate within {target:.0%} among the "
            f"images answered (even with no mistake, at least {images_to_show(target)} are needed), so the model "
            "answers every image. Label more images, or choose a higher referral target, to refer the uncertain "
            "ones to a person.")


def _referral_words(report: dict[str, Any]) -> str:
    """The referral rule's held-out figures in one sentence."""
    val = report["val"]
    if not val["answered"]:
        return (f"Referral: no confidence threshold keeps the error among answered images within "
                f"{report['target']:.0%} on {val['images']} held-out images, so every image is referred to a "
                "person. More labelled images, or a higher referral target, let the model answer.")
    return (f"Referral: the model answers when the probability of its class is at least {report['threshold']:.3f}; "
            f"on {val['images']} held-out images it answers {val['coverage']:.0%} with "
            f"{val['error_among_answered']:.1%} error among them (target {report['target']:.0%}).")


def _transfer_check(s: TrainingSession, labels, probs) -> TransferCheck | None:
    """The pretrained model against the from-scratch baseline, both by validation balanced accuracy (when the
    small network became the run's model, the pretrained figure is the linear probe's)."""
    found = s.state.get("transfer_check")
    if not found or len(labels) == 0:
        return None
    if found.get("delivered_scratch") or found.get("chosen_by") == "cross-validation":
        pretrained = found["pretrained_balanced_accuracy"]     # the probe's (out-of-fold with cross-validation)
    else:
        pretrained = balanced_accuracy(labels, predict_labels(probs, s.info.classes), len(s.info.classes))
    return TransferCheck(pretrained, found["baseline_balanced_accuracy"], found["baseline_epochs"],
                         found["baseline_seconds"], bool(found.get("delivered_scratch")))


def _json_safe(obj: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) with None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _json_safe(obj.tolist())
    return obj
