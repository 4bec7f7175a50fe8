"""The epoch loop: the plan's stages one epoch at a time, as a generator of plain events.

Each epoch is a function of the session: `probe_epoch` (features once, then the logistic regression),
`FineTuning.epoch` (the optimizer over the training split, then `validate`). Between the probe and
fine-tuning comes the from-scratch check (`baseline`): when the small network does clearly better than the
probe it becomes the run's model in an epoch of its own and fine-tuning is skipped. When fine-tuning ends
with time to spare, `members` trains further fine-tuned networks to average while each still lowers the
validation loss; on a small dataset `refit` then trains the model again on train+val. Then `complete` (the
calibration and decision threshold on validation, then the test split, evaluated once). Before every epoch
the training threads follow the cores other programs leave (`cpu_share`). The stop flag is checked every
batch; best.safetensors then last.safetensors are written after every epoch, so a run interrupted anywhere
resumes from its last finished epoch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from desktop_tl.core.errors import UserError
from desktop_tl.core.events import CheckpointSaved, EpochEnd, Message, Planned, RunStarted, TrainEvent
from desktop_tl.core.models.delivered import ENSEMBLE_ARCH
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.runs.folder import write_run_info
from desktop_tl.core.training import distributed
from desktop_tl.core.training.baseline import baseline_check, scratch_wins, test_time_views
from desktop_tl.core.training.baseline_folds import CrossValidatedChoice, cross_validated_check
from desktop_tl.core.training.completion import complete, wait_for_rank_zero
from desktop_tl.core.training.completion_multilabel import complete_multilabel
from desktop_tl.core.training.cpu_share import ThreadShare
from desktop_tl.core.training.devices import device_label
from desktop_tl.core.training.finetune import FineTuning
from desktop_tl.core.training.members import more_finetuned_networks
from desktop_tl.core.training.plan import BaselineStage, FineTuneStage, ProbeStage
from desktop_tl.core.training.probe import probe_epoch
from desktop_tl.core.training.refit import refit_on_all
from desktop_tl.core.training.session import TrainingSession

SCRATCH_ENDING = ("pretraining does not help", "The small network trained from scratch did clearly better on "
                  "validation than the pretrained backbone's linear probe: it is the run's model, and fine-tuning "
                  "is skipped.")


def run_events(session: TrainingSession, optimizer_state: dict | None) -> Iterator[TrainEvent]:
    """The whole run from its next epoch: RunStarted, the plan, epochs, the baseline check, completion."""
    s = session
    start_epoch = s.state["epoch"] + 1
    yield RunStarted(s.plan.total_epochs, start_epoch, len(s.train_samples), len(s.val_set),
                     device_label(s.device), s.trainable, s.total, s.batch_size)
    yield Planned(tuple(s.plan.describe()), s.plan.to_dict(), resumed=start_epoch > 1)
    for message in s.index.warnings:
        yield Message("warning", message)
    yield from s.notes
    threads = ThreadShare(enabled=s.device.type == "cpu" and s.world == 1)
    try:
        yield from _epochs(s, start_epoch, optimizer_state, threads)
    finally:
        s.close()   # ends persistent loader workers
        threads.restore()
        _mark_interrupted(s)


def _mark_interrupted(s: TrainingSession) -> None:
    """A run left unfinished (Stop, quitting the window, an error) says "interrupted" in run.json, not
    "running". Best effort: a kill cannot get here, and `RunFolder.status()` reads the checkpoints anyway."""
    if s.main and s.info.status == "running":
        s.info.status = "interrupted"
        try:
            write_run_info(s.info)
        except UserError:
            pass    # the error that ended the run (a full disk, say) has already been reported


def _epochs(s: TrainingSession, start_epoch: int, optimizer_state: dict | None,
            threads: ThreadShare) -> Iterator[TrainEvent]:
    if len(s.val_set) == 0:
        yield Message("warning", "No validation images: the best checkpoint is simply the latest one.")
    s.info.status = "running"
    if s.main:
        write_run_info(s.info)
    if not (yield from train_epochs(s, start_epoch, optimizer_state, threads)):
        yield s.finished(completed=False, stopped_by_user=True)
        return
    baseline = s.plan.stage("baseline")
    if isinstance(baseline, BaselineStage) and s.state["transfer_check"] is None and s.main:
        if s.state.get("cross_validation"):        # a probe-only plan: the small network may still replace it
            yield from _adopt_after_epochs(s)
        else:
            yield from baseline_check(s, baseline)
        if s.control.stop_requested:
            yield s.finished(completed=False, stopped_by_user=True)
            return
    def epochs_of(session, start, state):
        return train_epochs(session, start, state, threads)

    if not (yield from more_finetuned_networks(s, epochs_of)) or not (yield from refit_on_all(s, epochs_of)):
        yield s.finished(completed=False, stopped_by_user=True)
        return
    if not s.main:
        yield from wait_for_rank_zero(s)
    else:
        yield from (complete_multilabel(s) if s.plan.multi_label else complete(s))


def train_epochs(s: TrainingSession, start_epoch: int, optimizer_state: dict | None,
                 threads: ThreadShare) -> Iterator[TrainEvent]:
    """The plan's epochs from `start_epoch` (the probe, the check before fine-tuning, fine-tuning), each saved
    as it ends; returns True when they ran (or ended early, as the plan allows), False when stopped."""
    clock = _Clock(s.state["seconds"])
    finetuning: FineTuning | None = None
    for epoch in range(start_epoch, s.plan.total_epochs + 1):
        if s.state["ended_early"]:
            break
        note = threads.adjust()       # before every epoch: the cores other programs leave free
        if note:
            yield Message("info", note)
        stage, _ = s.plan.stage_at(epoch)
        epoch_started = time.perf_counter()
        kind, optimizer = stage.kind, None
        if isinstance(stage, ProbeStage):
            outcome = yield from probe_epoch(s, stage, epoch)
        else:
            scratch = (yield from _check_before_finetuning(s)) if _check_due(s, stage, epoch) else False
            if scratch is not False:       # the small network's figures, or None when stopped
                kind, outcome = "scratch", scratch
            else:
                epoch_started = time.perf_counter()   # the check's seconds are not this epoch's (budget pace)
                if finetuning is None:
                    finetuning = FineTuning(s, stage, optimizer_state)
                outcome = yield from finetuning.epoch(epoch)
                optimizer = finetuning.optimizer
        if outcome is None:
            return False
        train_loss, train_acc, val_loss, val_acc = outcome
        is_best = val_loss < s.state["best_val_loss"] or len(s.val_set) == 0 or kind == "scratch"
        if is_best:
            s.state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
        else:
            s.state["bad_epochs"] += 1
        lr = optimizer.param_groups[-1]["lr"] if optimizer is not None else 0.0
        seconds = time.perf_counter() - epoch_started
        s.state["history"].append({"epoch": epoch, "stage": kind, "train_loss": train_loss,
                                   "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc,
                                   "lr": lr, "seconds": round(seconds, 2)})
        s.state["epoch"] = epoch
        s.state["seconds"] = clock.total()
        ending = _ending(s, stage, epoch, seconds) if kind != "scratch" else SCRATCH_ENDING
        s.state["ended_early"] = ending[0] if ending else None
        yield EpochEnd(epoch, s.plan.total_epochs, train_loss, train_acc, val_loss, val_acc, lr, seconds, is_best,
                       kind)
        if s.main:   # under torchrun only rank 0 writes; the others wait until the files are there
            s.save(is_best, optimizer)
        distributed.barrier()
        yield CheckpointSaved(epoch, "last.safetensors", False)
        if is_best:
            yield CheckpointSaved(epoch, "best.safetensors", True)
        if ending:
            yield Message("info", ending[1])
    return True


def _adopt_after_epochs(s: TrainingSession) -> Iterator[TrainEvent]:
    """After a probe-only plan on a small dataset: the cross-validated check; when the small network or the
    average of it and the probe wins, that becomes the run's model (both checkpoints)."""
    choice = yield from cross_validated_check(s, s.plan.stage("baseline"))
    if choice is None or choice.chosen == "probe" or s.control.stop_requested:
        return
    if choice.chosen == "scratch":
        _adopt_small_networks(s, choice)
        yield Message("info", SCRATCH_ENDING[1])
    else:
        s.adopt(Ensemble([s.model, *(fit.model for fit in choice.small_networks)], test_time_views(s)),
                ENSEMBLE_ARCH)
        yield Message("info", ENSEMBLE_NOTE)
    s.state["cross_validation"]["trained_on_all"] = choice.chosen
    s.state.update(best_epoch=s.state["epoch"], best_val_loss=choice.oof_loss)
    s.save(True, None)


ENSEMBLE_NOTE = ("The run's model averages the pretrained backbone's predictions with the small network's: "
                 "together they did better beyond the noise than either alone. It is exported as one model "
                 "(no heat maps: the two models' maps cannot be added up).")


def _adopt_small_networks(s: TrainingSession, choice: CrossValidatedChoice) -> None:
    """The small network, or the average of several (with other seeds), becomes the run's model; it learnt
    from every training and validation image, and its out-of-fold predictions stand in for validation."""
    networks = [fit.model for fit in choice.small_networks]
    if len(networks) == 1:
        s.adopt(networks[0])
    else:
        s.adopt(Ensemble(networks, test_time_views(s)), ENSEMBLE_ARCH)
    s.state["cross_validation"]["trained_on_all"] = "scratch"


def _check_due(s: TrainingSession, stage: FineTuneStage, epoch: int) -> bool:
    """True at the first fine-tuning epoch after a linear probe, when the from-scratch check has not run yet
    (a single process: under torchrun the check runs after the epochs, on rank 0)."""
    return (s.world == 1 and s.state["transfer_check"] is None and s.plan.stage("probe") is not None
            and isinstance(s.plan.stage("baseline"), BaselineStage) and epoch == s.plan.first_epoch_of(stage))


def _check_before_finetuning(s: TrainingSession):
    """The from-scratch check between the probe and fine-tuning. Returns the epoch's figures when the small
    network wins and becomes the run's model, False when fine-tuning goes ahead, None when stopped."""
    if s.state.get("cross_validation"):
        choice = yield from cross_validated_check(s, s.plan.stage("baseline"))
        if choice is None or s.control.stop_requested:
            return None
        if choice.chosen == "ensemble":
            s.keep_member(choice.small_networks[0].model)
            s.state["ensemble"] = "pending"
            yield Message("info", "The average of the pretrained path and the small network did best: fine-tuning "
                                  "goes ahead, and the run's model will average the fine-tuned model with that "
                                  "network (trained on the training split, as the fine-tuned model is).")
        if choice.chosen != "scratch":
            return False
        _adopt_small_networks(s, choice)
        fit = choice.small_networks[0]
        return fit.train_loss, fit.train_accuracy, choice.oof_loss, choice.oof_accuracy
    else:
        fit = yield from baseline_check(s, s.plan.stage("baseline"))
        if s.control.stop_requested:
            return None
        if fit is None or not scratch_wins(s, fit):
            return False
    s.adopt(fit.model)
    return fit.train_loss, fit.train_accuracy, fit.val_loss, fit.val_accuracy


def _ending(s: TrainingSession, stage, epoch: int, seconds: float) -> tuple[str, str] | None:
    """Why the epochs end after this one, before the plan's last: (reason, message), or None."""
    if not isinstance(stage, FineTuneStage) or epoch >= s.plan.total_epochs:
        return None
    if stage.patience and s.state["bad_epochs"] >= stage.patience and not _still_falling(s):
        return "early stopping", (f"Early stopping: validation loss has not improved for "
                                  f"{s.state['bad_epochs']} epochs and no longer falls.")
    budget = s.plan.budget_seconds
    still = ("refit", "evaluation") if s.state["transfer_check"] else ("baseline", "refit", "evaluation")
    after = sum(v for k, v in s.plan.estimated_seconds.items() if k in still)
    if budget and s.state["seconds"] + seconds + after > budget:
        return "time budget", (f"Time budget: {s.state['seconds'] / 60:.1f} of {budget / 60:g} minutes used and "
                               f"another epoch (about {seconds:.0f} s) would not fit with the final checks, so "
                               "fine-tuning ends here; the best epoch so far is kept.")
    return None


def _still_falling(s) -> bool:
    """True when the last epoch lowered the validation loss of the one before: the learning curve still falls
    (as it does in the last epochs of a cosine schedule), so early stopping waits even when the best epoch is
    older than the patience."""
    losses = [row["val_loss"] for row in s.state["history"][-2:] if row.get("stage") == "finetune"]
    return len(losses) == 2 and losses[1] < losses[0]


class _Clock:
    """Seconds a run has trained, across resumes, and the pace for the ETA."""

    def __init__(self, before: float) -> None:
        self.before, self.started = float(before or 0.0), time.perf_counter()

    def total(self) -> float:
        return self.before + time.perf_counter() - self.started


