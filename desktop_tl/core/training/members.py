"""An anytime budget for a fine-tuned model: while the budget holds it, another fine-tuned network joins the average.

The plan's fine-tuning epochs are what a fine-tune from a fitted classifier needs (about TARGET_STEPS
optimizer steps), not what the budget holds: on a few thousand images a Balanced run used to end with a third
of its ten minutes unspent. When fine-tuning beat the linear probe and the rest of the budget holds another
fine-tune (estimated from the epochs just run, keeping the time of the refit and of the final evaluation),
the same settings train another network with another seed (another order of the images and of their
augmentations), validated on the validation split as the first was, in a session of its own in the run
folder's `memberN/` (a run stopped there resumes it).

Averaging cannot raise the log loss above the members' mean (Jensen's inequality, image by image), so a member
needs no test beyond the noise to be safe; the rounds stop when the last member lowered the validation loss of
the average by less than MIN_LOSS_GAIN (more time would not help), at MAX_FINETUNED_NETWORKS, or when the
budget holds no more, and the log says which. A kept member makes the run's model one ensemble (heat maps
still work: the members' maps have one size); a refit on train+val that follows trains the first network
again, and the others keep the training split's weights.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from desktop_tl.core.evaluation.selection import log_loss_gain, mean_log_loss
from desktop_tl.core.evaluation.splits import predict_split
from desktop_tl.core.events import Message, TrainEvent
from desktop_tl.core.models.delivered import ENSEMBLE_ARCH
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.models.rebuild import architecture_for
from desktop_tl.core.reporting import duration
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.training.baseline_folds import MIN_LOSS_GAIN
from desktop_tl.core.training.completion import deliver_best
from desktop_tl.core.training.planner import START_SECONDS
from desktop_tl.core.training.refit import finetune_epochs_found, refit_seconds
from desktop_tl.core.training.session import TrainingSession
from desktop_tl.core.training.side_session import chosen_settings_plan, train_side_session

MAX_FINETUNED_NETWORKS = 4     # averaged at most, the first included
MIN_VALIDATION_IMAGES = 30     # fewer cannot tell whether another network still helps
SEED_STEP = 1000
MEMBER_FOLDER = "member{}"
SAFETY = 1.2                   # a member is trained only when the budget holds this much more than its estimate


def finetuned_networks(s: TrainingSession) -> int:
    """How many fine-tuned networks the run's model averages (1 for a single network)."""
    return len(s.model.members) if isinstance(s.model, Ensemble) else 1


def member_seconds(s: TrainingSession) -> float:
    """One more network's time: the probe and the fine-tuning epochs the run itself trained, once more, and the
    start of a session (the model, the loaders)."""
    return START_SECONDS + sum(row.get("seconds", 0.0) for row in s.state["history"]
                               if row.get("stage") in ("probe", "finetune"))


def seconds_left(s: TrainingSession) -> float:
    """What the time budget leaves for more networks after the refit still to come and the final evaluation."""
    cv = s.state.get("cross_validation")
    refit = refit_seconds(s) if cv and not cv.get("trained_on_all") and not s.state.get("refit") else 0.0
    return s.plan.budget_seconds - s.state["seconds"] - s.plan.estimated_seconds.get("evaluation", 0.0) - refit


def members_due(s: TrainingSession) -> bool:
    """Whether the run may train more fine-tuned networks: an automatic single-process run with a budget whose
    model is the fine-tuned network (it beat the probe), with validation images to judge by, not yet done."""
    record = s.state.get("members") or {}
    return bool(s.plan.recipe == "auto" and s.plan.budget_seconds and s.main and s.world == 1 and not s.plan.multi_label
                and s.plan.stage("finetune") is not None and finetune_epochs_found(s) > 0
                and s.arch in (s.cfg.model, ENSEMBLE_ARCH) and not s.state.get("ensemble")
                and not (s.state.get("cross_validation") or {}).get("trained_on_all")
                and not s.state.get("refit") and len(s.val_set) >= MIN_VALIDATION_IMAGES
                and not record.get("done"))


def more_finetuned_networks(s: TrainingSession, train_epochs: Callable[..., Iterator[TrainEvent]]):
    """The anytime rounds (see the module docstring). Returns False when the user stopped them, else True."""
    if not members_due(s):
        return True
    yield from deliver_best(s)            # the fine-tuned network as delivered (its views), the first member
    record = s.state["members"] or {"rounds": [], "done": False}
    current = None
    while True:
        stop = reason_to_stop(s)
        if stop:
            record.update(done=True, ended=stop)
            s.state["members"] = record
            s.save(True, None)
            yield Message("info", stop)
            return True
        number = finetuned_networks(s) + 1
        started = time.perf_counter()
        yield Message("info", f"Fine-tuning ended with {duration(seconds_left(s))} of the budget to spare: training "
                              f"fine-tuned network {number} (another seed, the same settings, about "
                              f"{duration(member_seconds(s))}) to average with the first.")
        trained = yield from _train_member(s, number, train_epochs)
        if trained is None:
            return False
        if current is None:
            current = _validation_probabilities(s, s.model)
        labels, before = current
        _, alone = _validation_probabilities(s, Ensemble([trained], _views(s.model)))
        k = finetuned_networks(s)
        candidate = (k * before + alone) / (k + 1)
        gain, spread = log_loss_gain(labels, before, candidate)
        kept = gain >= MIN_LOSS_GAIN
        round_ = {"network": number, "seed": s.cfg.seed + SEED_STEP * (number - 1),
                  "val_loss_before": round(mean_log_loss(labels, before), 4),
                  "val_loss_after": round(mean_log_loss(labels, candidate), 4), "gain": round(gain, 4),
                  "standard_error": round(spread, 4), "kept": kept,
                  "seconds": round(time.perf_counter() - started, 1)}
        record["rounds"].append(round_)
        s.state["seconds"] = float(s.state["seconds"]) + round_["seconds"]
        if kept:
            members = list(s.model.members) if isinstance(s.model, Ensemble) else [s.model]
            s.adopt(Ensemble([*members, trained.to(s.device)], _views(s.model)), ENSEMBLE_ARCH)
            s.state["best_val_loss"] = round_["val_loss_after"]
            current = (labels, candidate)
            yield Message("info", f"Fine-tuned network {number} lowers the validation loss of the average "
                                  f"({round_['val_loss_before']:.3f} -> {round_['val_loss_after']:.3f}): {number} are "
                                  "averaged.")
        else:
            ended = (f"Fine-tuned network {number} would lower the validation loss by less than {MIN_LOSS_GAIN} "
                     f"({round_['val_loss_before']:.3f} -> {round_['val_loss_after']:.3f}), so more time would not "
                     f"help: the model averages {number - 1} network{'s' * (number > 2)}, and the run ends with "
                     f"{duration(max(0.0, seconds_left(s)))} of its budget unused.")
            record.update(done=True, ended=ended)
            yield Message("info", ended)
        s.state["members"] = record
        s.save(True, None)
        shutil.rmtree(s.info.run_dir / MEMBER_FOLDER.format(number), ignore_errors=True)
        if record["done"]:
            return True


def reason_to_stop(s: TrainingSession) -> str | None:
    """Why no further network is trained now (the log's words), or None to train one."""
    count = finetuned_networks(s)
    if count >= MAX_FINETUNED_NETWORKS:
        return f"Averaging {count} fine-tuned networks (the most the recipe averages)."
    needed, left = SAFETY * member_seconds(s), seconds_left(s)
    if left < needed:
        kept = f"averaging {count} fine-tuned networks" if count > 1 else "one fine-tuned network"
        return (f"The model is {kept}: another would take about {duration(needed)} and the budget leaves "
                f"{duration(max(0.0, left))}.")
    return None


def _train_member(s: TrainingSession, number: int, train_epochs):
    """Network `number`, trained on the training split in `memberN/` with the run's chosen settings, its seed and
    the fine-tuning epochs the first network ran; its best epoch on validation, or None when stopped."""
    ran = sum(1 for row in s.state["history"] if row.get("stage") == "finetune")
    stage = s.plan.stage("finetune")
    plan = chosen_settings_plan(s, ran, patience=stage.patience)
    config = replace(s.cfg, seed=s.cfg.seed + SEED_STEP * (number - 1))
    folder = yield from train_side_session(s, MEMBER_FOLDER.format(number), s.index, plan, config, "member",
                                           f"Fine-tuned network {number}, epoch", train_epochs)
    if folder is None:
        return None
    best = checkpoint.load_checkpoint(folder / checkpoint.BEST)
    model = architecture_for(best.meta, len(s.info.classes))
    model.load_state_dict(best.model)
    return model.eval()


def _views(model) -> tuple[str, ...]:
    return model.views if isinstance(model, Ensemble) else ("identity",)


def _validation_probabilities(s: TrainingSession, model) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of the validation split."""
    model.to(s.device).eval()
    probabilities, labels, _ = predict_split(model, s.index, "val", s.prep, s.info.classes, s.device,
                                             max(s.batch_size, 32), s.cfg.num_workers, s.amp_dtype)
    return labels, np.asarray(probabilities, dtype=np.float64)
