"""The referral target chosen again after training, on the held-out predictions the run kept (validation,
out-of-fold or before the refit, as when it finished): no model is run, so a user whose run refers every
image at 5% can take the lowest target its held-out images can show. `evaluate --refer-target` and the
Evaluation panel's Referral tab call it; export then carries the new rule."""

from __future__ import annotations

from pathlib import Path

from desktop_tl.core.decision import Referral
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.referral import REFUSE_ALL, choose_referral, images_to_show, lowest_target
from desktop_tl.core.runs.folder import RunFolder, write_run_info
from desktop_tl.core.stored_scores import split_probabilities


def choose_referral_target(run_dir: Path, target: float) -> tuple[Referral | None, str]:
    """Choose the finished run's referral threshold for `target` (0: referral off) on its stored held-out
    predictions, save it in run.json, and return it with a sentence on what it does."""
    if not 0.0 <= target <= 0.5:
        raise UserError(f"The referral target must be between 0 (off) and 0.5, not {target}.", "For example 0.1.")
    folder = RunFolder(run_dir)
    info, metrics = folder.info(), folder.metrics() or {}
    found = split_probabilities(metrics.get("val"), info.classes) if info.finished else None
    if found is None:
        raise UserError("The run has no held-out predictions to choose a referral threshold on.",
                        "Let the run finish (or train it again with this version), then choose the target.")
    labels, probs = found
    source = metrics.get("val_source", "validation")
    if target == 0:
        info.referral = None
        write_run_info(info)
        return None, "Referral is off: the model answers every image it finds familiar."
    if len(labels) < images_to_show(target):
        raise UserError(f"{len(labels)} held-out images are too few to show an error within {target:.0%} (at least "
                        f"{images_to_show(target)} are needed).", "Choose a higher target, or label more images.")
    referral = choose_referral(labels, probs, info.classes, info.decision, target, chosen_on=source)
    info.referral = referral
    write_run_info(info)
    if referral.threshold >= REFUSE_ALL:
        lowest = lowest_target(labels, probs, info.classes, info.decision)
        hint = (f" The lowest target these images can show is {lowest[0]:.0%}, answering {lowest[1]:.0%} of them."
                if lowest else "")
        return referral, f"At {target:.0%} no threshold can be shown on {len(labels)} held-out images: every " \
                         f"image is referred.{hint}"
    return referral, (f"The model answers when the probability of its class is at least {referral.threshold:.3f} "
                      f"(error among answered within {target:.0%}, shown on {len(labels)} held-out images).")
