"""The negative-transfer check on a small dataset, by cross-validation: one small network per fold of the
probe's cross-validation predicts its held-out fold; the probe, the small network and their average are
compared paired on those out-of-fold predictions, and while the budget allows more small networks join the
average as long as they lower the out-of-fold loss. The one-split check and the training of a small network
are in `baseline`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from desktop_tl.core.evaluation.selection import average, compare_candidates, log_loss_gain, mean_log_loss
from desktop_tl.core.events import Message
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.training.baseline import (
    ScratchFit,
    mirroring_and_class_weights,
    small_copies,
    test_time_views,
    train_from_scratch,
)
from desktop_tl.core.training.plan import BaselineStage
from desktop_tl.core.training.session import TrainingSession


@dataclass(frozen=True)
class CrossValidatedChoice:
    """What the cross-validated check chose ("probe", "scratch" or "ensemble": the average of the pretrained
    path and the small network), the small networks refitted for it (none for "probe"; several are averaged),
    and the delivered model's out-of-fold figures."""

    chosen: str
    small_networks: tuple[ScratchFit, ...]
    oof_loss: float
    oof_accuracy: float


def cross_validated_check(s: TrainingSession, stage: BaselineStage):
    """The from-scratch check of a small dataset: one small network per fold of the probe's cross-validation
    predicts its held-out fold; the probe, the small network and their average are then compared paired on
    those out-of-fold predictions (core.evaluation.selection). When the small network or the average is better
    than the probe beyond the noise, the small network is trained once more with as many epochs as the folds
    had: on every training and validation image when it is delivered without fine-tuning, on the training
    split alone when it joins a model that fine-tuning (validated on the validation split) will still train.
    Returns the CrossValidatedChoice, or None when stopped. The comparison is kept in the run state."""
    cv = s.state["cross_validation"]
    folds = cv["folds"]
    yield Message("info", f"Checking whether pretraining helps: a small network trained from scratch on each of the "
                          f"{folds} folds (up to {stage.epochs} epochs at {stage.image_size} px, about "
                          f"{stage.seconds:.0f} s in all)…")
    started = time.perf_counter()
    found: list[str] = []
    parts = [small_copies(s, dataset, stage.image_size, found) for dataset in (s.train_set(None), s.val_set)]
    if any(p is None for p in parts):
        return None
    images, by_path = torch.cat([p[0] for p in parts]), {path: k for k, path in enumerate(found)}
    order = torch.tensor([by_path[path] for path in cv["paths"]])     # the probe's order of the images
    x, y, fold = images[order], torch.tensor(cv["labels"]), torch.tensor(cv["fold"])
    classes = len(s.info.classes)
    mirror, weights = mirroring_and_class_weights(s)
    share = max(1.0, stage.seconds - (time.perf_counter() - started)) / (folds + 1)
    setting = _SmallSetting(x, y, fold, folds, classes, weights, mirror, test_time_views(s),
                            lambda: s.control.stop_requested)
    round_started = time.perf_counter()
    found = _fold_predictions(setting, stage.epochs, s.cfg.seed, share)
    if found is None:
        return None
    oof, epochs = found
    round_seconds = time.perf_counter() - round_started
    labels = y.numpy()
    probe_oof = np.asarray(cv["oof"]["probe"])
    candidates = {"probe": probe_oof, "scratch": oof.numpy(), "ensemble": average([probe_oof, oof.numpy()])}
    comparison = compare_candidates(labels, candidates, "probe", folds, seed=s.cfg.seed,
                                    parts={"ensemble": ("probe", "scratch")})
    cv["comparison"] = comparison.to_dict()
    for line in comparison.describe(CANDIDATE_WORDS):
        yield Message("info", line)
    scratch_score, probe_score = comparison.score("scratch"), comparison.score("probe")
    s.state["transfer_check"] = {"baseline_balanced_accuracy": scratch_score.balanced_accuracy,
                                 "pretrained_balanced_accuracy": probe_score.balanced_accuracy,
                                 "baseline_epochs": int(np.median(epochs)),
                                 "baseline_seconds": round(time.perf_counter() - started, 1),
                                 "chosen_by": "cross-validation"}
    chosen = comparison.score(comparison.chosen)
    oofs, seeds = [oof.numpy()], [s.cfg.seed]
    if comparison.chosen == "probe" or s.control.stop_requested:
        cv["oof"]["scratch"] = _rounded(oofs[0])
        return CrossValidatedChoice("probe", (), chosen.log_loss, chosen.accuracy)
    on_all = comparison.chosen == "scratch" or s.plan.stage("finetune") is None
    epochs_found = int(np.median(epochs))
    if on_all:     # no fine-tuning follows: the rest of the budget may buy more small networks to average
        extra = yield from _more_small_networks(s, setting, comparison.chosen, probe_oof, oofs, seeds, epochs_found,
                                                round_seconds)
        if extra is None:
            return None
    delivered = _delivered_oof(comparison.chosen, probe_oof, oofs)
    cv["oof"]["scratch"] = _rounded(average(oofs))
    cv["oof"][comparison.chosen] = _rounded(delivered)
    cv["small_networks"] = len(seeds)
    validation = {sample.path for sample in s.val_set.samples}
    rows = (torch.ones(len(y), dtype=torch.bool) if on_all else
            torch.tensor([path not in validation for path in cv["paths"]]))
    finals = []
    for seed in seeds:
        final = train_from_scratch(x[rows], y[rows], x[:0], y[:0], classes, epochs_found, weights, seed, mirror,
                                   setting.should_stop)
        if final is None:
            return None
        finals.append(final)
    s.state["transfer_check"].update(delivered_scratch=comparison.chosen == "scratch",
                                     baseline_seconds=round(time.perf_counter() - started, 1))
    accuracy = float((delivered.argmax(1) == labels).mean())
    return CrossValidatedChoice(comparison.chosen, tuple(finals), mean_log_loss(labels, delivered), accuracy)


MAX_SMALL_NETWORKS = 5       # averaged at most; each costs one more round of folds
MIN_LOSS_GAIN = 0.005        # nats per image: a smaller fall of the out-of-fold loss ends the rounds


@dataclass(frozen=True)
class _SmallSetting:
    """The small copies of the training and validation images, their folds, and how small networks train."""

    x: torch.Tensor
    y: torch.Tensor
    fold: torch.Tensor
    folds: int
    classes: int
    weights: torch.Tensor | None
    mirror: bool
    views: tuple[str, ...]
    should_stop: Callable[[], bool]


def _fold_predictions(setting: _SmallSetting, epochs: int, seed: int, max_seconds: float = float("inf")):
    """One small network per fold, each predicting its held-out fold (averaged over the views the probe's
    predictions are averaged over): (out-of-fold probabilities, epochs per fold), or None when stopped."""
    x, y, fold = setting.x, setting.y, setting.fold
    oof = torch.zeros(len(y), setting.classes)
    used = []
    for f in range(setting.folds):
        held, kept = fold == f, fold != f
        fit = train_from_scratch(x[kept], y[kept], x[held], y[held], setting.classes, epochs, setting.weights,
                                 seed + f, setting.mirror, setting.should_stop, max_seconds)
        if fit is None:
            return None
        with torch.no_grad():
            oof[held] = Ensemble([fit.model], setting.views)(x[held]).softmax(1)
        used.append(fit.epochs)
    return oof, used


def _delivered_oof(chosen: str, probe_oof: np.ndarray, oofs: list[np.ndarray]) -> np.ndarray:
    """The out-of-fold prediction of the delivered model: the small networks averaged, with the probe as one
    more member of the average when the choice is the ensemble."""
    return average([probe_oof, *oofs] if chosen == "ensemble" else oofs)


def _seconds_left(s: TrainingSession, since: float) -> float:
    """What the time budget leaves after this check and the final evaluation (0 without a budget: a custom run
    trains nothing it was not asked to)."""
    if not s.plan.budget_seconds:
        return 0.0
    spent = float(s.state["seconds"] or 0.0) + time.perf_counter() - since
    return s.plan.budget_seconds - spent - s.plan.estimated_seconds.get("evaluation", 0.0)


def _more_small_networks(s: TrainingSession, setting: _SmallSetting, chosen: str, probe_oof: np.ndarray,
                         oofs: list[np.ndarray], seeds: list[int], epochs: int, round_seconds: float):
    """An anytime budget for a delivered small network: while the budget leaves time for another round of folds
    (and for training every network once more on all the images), one more small network with another seed is
    trained on the folds and joins the average. Averaging cannot raise the log loss above the members' mean
    (Jensen's inequality, image by image), so a member needs no test beyond the noise to be safe; the rounds
    stop when the last one lowered the delivered model's out-of-fold loss by less than MIN_LOSS_GAIN (the
    learning curve has flattened: more time would not help), or at MAX_SMALL_NETWORKS. Appends to `oofs` and
    `seeds`; returns True, or None when stopped."""
    since = time.perf_counter()
    refit_seconds = round_seconds / setting.folds * 1.3
    labels = setting.y.numpy()
    while len(seeds) < MAX_SMALL_NETWORKS:
        needed = 1.2 * (round_seconds + refit_seconds * (len(seeds) + 1))
        if _seconds_left(s, since) < needed:
            yield Message("info", f"Averaging {len(seeds)} small network{'s' * (len(seeds) > 1)}: the time budget "
                                  f"leaves no room for another round of {setting.folds} folds (about "
                                  f"{round_seconds:.0f} s).")
            return True
        seed = s.cfg.seed + 1000 * len(seeds)
        found = _fold_predictions(setting, epochs, seed)
        if found is None:
            return None
        current, candidate = (_delivered_oof(chosen, probe_oof, oofs),
                              _delivered_oof(chosen, probe_oof, [*oofs, found[0].numpy()]))
        before, after = mean_log_loss(labels, current), mean_log_loss(labels, candidate)
        if log_loss_gain(labels, current, candidate)[0] < MIN_LOSS_GAIN:
            yield Message("info", f"Averaging {len(seeds)} small network{'s' * (len(seeds) > 1)}: another one "
                                  f"would lower the out-of-fold loss by less than {MIN_LOSS_GAIN} ({before:.3f} -> "
                                  f"{after:.3f}), so more time would not help.")
            return True
        oofs.append(found[0].numpy())
        seeds.append(seed)
        yield Message("info", f"Another small network lowers the out-of-fold loss ({before:.3f} -> {after:.3f}): "
                              f"{len(seeds)} are averaged.")
    yield Message("info", f"Averaging {len(seeds)} small networks (the most the recipe averages).")
    return True


def _rounded(probabilities: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 5) for v in row] for row in probabilities]


CANDIDATE_WORDS = {"probe": "linear probe of the pretrained backbone", "scratch": "small network from scratch",
                   "ensemble": "average of the two"}
