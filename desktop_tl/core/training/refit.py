"""Training again on every label but the test split's (the refit of a small dataset's fine-tuned model).

On a small dataset the recipe makes its choices by cross-validation and fine-tunes on the training split,
validating on the validation split to find how many epochs pay. Those validation images then teach the
delivered model nothing, though on a few hundred labels they are 15% of them. Once the run's model is chosen,
the refit trains it once more from the pretrained weights on the training and validation images together,
with the settings chosen (probe views and penalty, the fine-tuning stage) for the fine-tuning epochs up to
the best one; the small network of an average is trained again on them too. The delivered model keeps the
structure chosen (the average, the views), with the refitted weights.

The refit runs in a session of its own in the run folder's `refit/` (its checkpoints there: a run stopped
during the refit resumes it). Its model has no held-out images of its own: the calibration, the decision
threshold and the referral rule are chosen on the validation predictions of the model before the refit,
kept in the run state, and the test split is evaluated once, on the refitted model.

The refit runs only when the rest of the time budget holds it, estimated from the epochs it repeats; the
log says so either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from desktop_tl.core.evaluation.splits import predict_split
from desktop_tl.core.events import Message, TrainEvent
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.reporting import duration
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.training.baseline import small_network_on_all
from desktop_tl.core.training.completion import deliver_best
from desktop_tl.core.training.plan import Plan
from desktop_tl.core.training.session import TrainingSession
from desktop_tl.core.training.side_session import chosen_settings_plan, train_side_session

REFIT_FOLDER = "refit"


def finetune_epochs_found(s: TrainingSession) -> int:
    """The fine-tuning epochs up to the best epoch (0 when the probe's epoch stayed the best)."""
    stage = s.plan.stage("finetune")
    return max(0, s.state["best_epoch"] - s.plan.first_epoch_of(stage) + 1) if stage else 0


def refit_plan(s: TrainingSession) -> Plan:
    """The run's plan for the refit: the probe with the views and penalty chosen, then the fine-tuning stage for
    the epochs validation found (no early stopping: there is nothing left to validate on), nothing to choose."""
    return chosen_settings_plan(s, finetune_epochs_found(s), patience=0)


def refit_seconds(s: TrainingSession) -> float:
    """The refit's time, from the epochs it repeats scaled to the training and validation images together."""
    scale = (len(s.train_samples) + len(s.val_set)) / max(1, len(s.train_samples))
    last = s.state["best_epoch"]
    repeated = sum(row.get("seconds", 0.0) for row in s.state["history"]
                   if row.get("stage") in ("probe", "finetune") and row["epoch"] <= last)
    if s.state.get("ensemble") == "pending":
        check = s.state.get("transfer_check") or {}
        folds = (s.state.get("cross_validation") or {}).get("folds", 5)
        repeated += check.get("baseline_seconds", 0.0) / (folds + 1)
    return scale * repeated


def refit_due(s: TrainingSession) -> tuple[bool, str]:
    """Whether this run refits, and what the log says about it ("" for runs it does not concern: a large
    dataset validated on its split, a custom recipe, a model that already learnt from every label)."""
    cv = s.state.get("cross_validation")
    if not cv or cv.get("trained_on_all") or s.state.get("refit") or s.plan.recipe != "auto" or not s.main:
        return False, ""
    if s.world > 1:
        return False, ("The model is not trained again on train+val under torchrun; it learnt from the "
                       f"{len(s.train_samples)} training images.")
    needed = refit_seconds(s)
    budget = s.plan.budget_seconds
    left = budget - s.state["seconds"] - s.plan.estimated_seconds.get("evaluation", 0.0) if budget else None
    if left is not None and needed > left:
        return False, (f"Not trained again on the training and validation images together: that takes about "
                       f"{duration(needed)} and {duration(max(0.0, left))} of the time budget is left. The model "
                       f"learnt from the {len(s.train_samples)} training images; a larger budget lets it learn "
                       f"from the {len(s.val_set)} validation images too.")
    return True, ""


def refit_on_all(s: TrainingSession, train_epochs: Callable[..., Iterator[TrainEvent]]):
    """The refit (see the module docstring), when `refit_due`; `train_epochs(session, start_epoch,
    optimizer_state)` is the epoch loop (core.training.loop's). Returns False when the user stopped it."""
    due, words = refit_due(s)
    if words:
        yield Message("info", words)
    if not due:
        return True
    started = time.perf_counter()
    yield from deliver_best(s)
    val_raw, val_labels, val_paths = predict_split(s.model, s.index, "val", s.prep, s.info.classes, s.device,
                                                   max(s.batch_size, 32), s.cfg.num_workers, s.amp_dtype)
    plan = refit_plan(s)
    pooled = len(s.train_samples) + len(s.val_set)
    yield Message("info", f"Training again on all {pooled} training and validation images with the settings chosen "
                          f"(the probe, then {finetune_epochs_found(s)} fine-tuning epochs, as validation found; "
                          f"about {duration(refit_seconds(s))}), so that the delivered model learns from every "
                          "label but the test split's…")
    refitted = yield from _train_on_all(s, plan, train_epochs)
    if refitted is None:
        return False
    member = None
    if s.state.get("ensemble") == "joined":      # the average of the fine-tuned model and a small network
        scratch = s.model.members[1]
        member = small_network_on_all(s, scratch.size, s.state["transfer_check"]["baseline_epochs"])
        if member is None:
            return False
    _install(s.model, refitted, member.model if member else None)
    s.state["refit"] = {"images": pooled, "finetune_epochs": finetune_epochs_found(s),
                        "seconds": round(time.perf_counter() - started, 1),
                        "held_out": {"probabilities": np.round(val_raw, 5).tolist(), "labels": val_labels.tolist(),
                                     "paths": val_paths}}
    s.save(True, None)
    yield Message("info", f"Trained again on {pooled} images in {duration(time.perf_counter() - started)}. Its "
                          "calibration, threshold and referral rule come from the validation predictions of the "
                          "model before this refit; the test split is evaluated once, on the refitted model.")
    return True


def _train_on_all(s: TrainingSession, plan: Plan, train_epochs):
    """The refit session's epochs (resumed from `refit/` when it was stopped); its model, or None when stopped."""
    index = replace(s.index, samples=[replace(x, split="train") if x.split == "val" else x
                                      for x in s.index.samples])
    folder = yield from train_side_session(s, REFIT_FOLDER, index, plan, s.cfg, "refit", "Refit epoch", train_epochs)
    return None if folder is None else checkpoint.load_checkpoint(folder / checkpoint.LAST).model


def _install(model, refitted: dict, member) -> None:
    """The refitted weights into the delivered model: the fine-tuned model (the first member of an average or of
    a model averaged over views), and the small network trained again when the model averages one."""
    target = model.members[0] if isinstance(model, Ensemble) else model
    target.load_state_dict(refitted)
    if member is not None:
        model.members[1].load_state_dict(member.state_dict())
