"""The automatic recipe: which stages, image size, epochs and rates a run gets, as a pure function.

`plan_auto` is a pure function of what is known before training starts: a summary of the data, the
model's facts, the throughput measured on this machine and the user's time budget. It follows the
practice for small-data transfer learning:

1. a linear probe: the frozen backbone's features are computed once (with flipped or rotated views
   where orientation carries no meaning) and a logistic regression is fitted to convergence, its L2
   penalty chosen on the validation split;
2. where the budget allows, fine-tuning from that head (LP-FT, Kumar et al., ICLR 2022): every layer
   trains with layer-wise learning-rate decay, BatchNorm statistics stay as pretrained (the head was
   fitted on them), warm-up then cosine schedule, early stopping on validation loss;
3. a cheap baseline without pretraining (a small network trained from scratch) to check that transfer
   helps at all. It runs right after the probe; when it does clearly better on validation, it becomes the
   run's model and fine-tuning is skipped (core.training.baseline);
4. on a small dataset, where the choices are made by cross-validation, the fine-tuned model is trained again
   on the training and validation images once validation has found its epochs (core.training.refit), with
   the time the budget leaves after the rest: the image size and epochs come first (on the animal
   silhouettes, 192 px with the refit held out 0.927, 224 px without it 0.933: see benchmarks/RESULTS.md).

`plan_custom` turns the user's own settings into a one-stage plan, so one loop runs both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from desktop_tl.core.config import BUDGET_PRESETS, ORIENTATIONS, TrainConfig
from desktop_tl.core.errors import UserError
from desktop_tl.core.reporting import duration
from desktop_tl.core.training.plan import (
    VIEW_SETS,
    BaselineStage,
    DataSummary,
    FineTuneStage,
    ModelFacts,
    Plan,
    ProbeStage,
    Stage,
    Throughput,
)

TARGET_STEPS = 250            # optimizer steps a fine-tune from a fitted classifier needs on a small dataset
MIN_TARGET_EPOCHS, MAX_TARGET_EPOCHS, MAX_EPOCHS = 6, 20, 40
MIN_FINETUNE_EPOCHS = 3       # fewer than this does not pay for leaving the probe's optimum
MIN_FINETUNE_SIZE = 96
PROBE_SHARE = 0.25            # "auto" orientation compares fewer views when their features cost more of the budget
IMBALANCE_FOR_WEIGHTING = 1.5
START_SECONDS = 5.0           # model build, loaders, checkpoint writes
DECODE_SECONDS_PER_IMAGE = 0.003
PROBE_FIT_SECONDS, PROBE_FIT_PER_ROW = 1.0, 0.0025   # the L-BFGS path: rows = images x views over the sets compared
# A real epoch is slower than the timed steps of the throughput probe (loading, per-group optimizer updates,
# validation, events): the ratios seen on the benchmark sets on a 2-core laptop (benchmarks/quality.py).
TRAIN_OVERHEAD, FORWARD_OVERHEAD = 1.4, 1.5
BASELINE_SHARE, BASELINE_MAX_SECONDS = 0.08, 60.0   # of the budget, for the from-scratch check
BASELINE_EPOCHS = 40       # at most: as many as fit its share of the budget (8x8 digits: 0.96-0.97 held-out at 20, 0.975 at 40)
BASELINE_SIZE = 48
# Below this many training + validation images the recipe's choices are made by cross-validation: a
# validation split of a few hundred images or less is too noisy to choose with (80 images: +-8 points).
CV_MAX_IMAGES, CV_FOLDS = 2000, 5
CV_BASELINE_SHARE, CV_BASELINE_MAX_SECONDS = 0.12, 90.0   # the small network is trained once per fold, and again
# Fine-tuning learning rates (AdamW, peak, for the classifier; earlier layers get less by the layer-wise
# decay) per model family, warmed up over two epochs. For EfficientNet-Lite0 on the development sets:
# the digits did best with 1e-3 (held-out accuracy 0.92-0.96 over 3 seeds; 0.88-0.92 with 3e-4), the
# solar cells with 3e-4 or 5e-4 (validation loss 0.415 after 8 epochs; with 1e-3 the training loss stayed
# flat and the probe was kept): 5e-4 is the compromise. The other families are scaled from timm's recipes.
FAMILY_DEFAULTS = {"efficientnet": (5e-4, 0.7), "mobilenet": (5e-4, 0.7), "resnet": (5e-4, 0.7),
                   "regnet": (5e-4, 0.7), "convnext": (2e-4, 0.7), "vit": (5e-5, 0.75)}
OTHER_FAMILY = (2e-4, 0.7)


def model_family(arch: str) -> str:
    """The family whose fine-tuning defaults apply ("efficientnet", "vit", ...; "other")."""
    name = arch.lower()
    for family in FAMILY_DEFAULTS:
        if name.startswith(family) or (family == "efficientnet" and name.startswith("tf_efficientnet")):
            return family
    return "other"


def plan_custom(cfg: TrainConfig) -> Plan:
    """The user's own settings as a one-stage plan (the "custom" recipe)."""
    stage = FineTuneStage(cfg.epochs, cfg.freeze, cfg.lr, cfg.layer_decay, cfg.weight_decay, cfg.warmup_epochs,
                          cfg.label_smoothing, cfg.augment, patience=cfg.early_stopping_patience)
    return Plan("custom", cfg.image_size, None, cfg.batch_size, cfg.class_weighted, False, (stage,))


@dataclass(frozen=True)
class _Costs:
    """Seconds of each part of an automatic plan at one input size."""

    start: float
    probe: float
    epoch: float
    evaluation: float
    baseline: float
    refit_scale: float = 0.0       # a small set's refit on train+val repeats the probe and each epoch this much more

    def fixed(self) -> float:
        return self.start + self.probe + self.evaluation + self.baseline


def _candidate_sizes(native: int, smallest: int = 64) -> list[int]:
    sizes = {native, 192, 160, 128, 96, 64}
    return sorted((s for s in sizes if smallest <= s <= native), reverse=True) or [native]


def _target_epochs(train_images: int, batch: int, budget: float) -> int:
    steps = max(1, math.ceil(train_images / batch))
    target = min(MAX_TARGET_EPOCHS, max(MIN_TARGET_EPOCHS, math.ceil(TARGET_STEPS / steps)))
    return min(MAX_EPOCHS, target * 2) if budget >= BUDGET_PRESETS["best"] else target


def plan_auto(data: DataSummary, model: ModelFacts, speed: Throughput, budget_seconds: float,
              orientation: str = "auto", batch_size: int | None = None) -> Plan:
    """The automatic recipe for this data, model, machine and budget (see the module docstring).

    The image size is the largest (up to the model's own) at which the probe, the baseline check, the
    final evaluation and at least half the wanted fine-tuning epochs fit the budget; with too little time
    for fine-tuning the plan is the linear probe alone.
    """
    if orientation not in ORIENTATIONS:
        raise UserError(f"Unknown orientation setting {orientation!r}.", f"Choose one of {', '.join(ORIENTATIONS)}.")
    batch = batch_size if batch_size is not None else (0 if speed.device == "cuda" else
                                                       16 if data.train_images < 512 else 32)
    multi = bool(data.multi_label_images)
    if multi:      # the linear probe, the small-network check and cross-validation are single-label (softmax)
        model = replace(model, probe_ok=False)
    folds = cross_validation_folds(data) if model.probe_ok else 0
    share, cap = (CV_BASELINE_SHARE, CV_BASELINE_MAX_SECONDS) if folds else (BASELINE_SHARE, BASELINE_MAX_SECONDS)
    costs = _CostModel(data, speed, min(share * budget_seconds, cap) if model.pretrained and not multi else 0.0,
                       folds)
    view_sets = _affordable_view_sets(orientation, costs, budget_seconds, model.native_size)
    target = _target_epochs(data.train_images, batch or 64, budget_seconds)
    size, epochs, reasons = _size_and_epochs(costs, view_sets, target, budget_seconds, model)
    if size > data.median_side:
        reasons.append(f"Images of about {data.median_side} px are enlarged to {size} px, closer to the "
                       f"{model.native_size} px the backbone was trained at.")
    elif size < model.native_size:
        fits = "fine-tuning fits" if epochs else "the linear probe fits"
        reasons.append(f"{size} px instead of the model's {model.native_size} px, so that {fits} the budget.")
    class_weighted = data.imbalance > IMBALANCE_FOR_WEIGHTING and not multi
    if multi:
        reasons.append("Several labels per image: the whole network is fine-tuned with one sigmoid output per label "
                       "(the linear probe, the check against a small network trained from scratch and "
                       "cross-validation are not available for multi-label runs yet); a rare label's images weigh "
                       "more in the loss.")
    elif class_weighted:
        reasons.append(f"The largest class has {data.imbalance:.1f}x as many training images as the smallest: "
                       "the loss weighs classes equally.")
    if not model.probe_ok and not multi:
        reasons.append(f"{model.arch}'s classifier is not a single linear layer, so there is no linear probe: "
                       "the whole network is fine-tuned from a new classifier.")
    if not model.probe_ok:
        epochs = max(epochs, MIN_FINETUNE_EPOCHS)
    stages, estimate = _stages(data, model, costs.at(size, view_sets), view_sets, orientation, epochs, budget_seconds,
                               baseline=not multi)
    if folds:
        reasons.append(f"{data.train_images + data.val_images} training and validation images: the choices are made "
                       f"by {folds}-fold cross-validation, not on {data.val_images} validation images alone.")
    return Plan("auto", size, 1.0, batch, class_weighted, len(data.train_counts) == 2 and not multi, stages,
                budget_seconds, estimate, tuple(reasons), folds, multi)


def cross_validation_folds(data: DataSummary) -> int:
    """Folds for the recipe's choices: CV_FOLDS on a small dataset (fewer when a class is small), 0 (choose on
    the validation split) on a large one or when a class has too few images to spread over folds."""
    if data.train_images + data.val_images >= CV_MAX_IMAGES or not data.train_counts:
        return 0
    folds = min(CV_FOLDS, min(data.train_counts))
    return folds if folds >= 2 else 0


class _CostModel:
    """Seconds of each part of an automatic plan, from the data's size and the measured throughput."""

    def __init__(self, data: DataSummary, speed: Throughput, baseline_seconds: float, folds: int = 0) -> None:
        self.data, self.speed, self.baseline_seconds, self.folds = data, speed, baseline_seconds, folds

    def at(self, size: int, view_sets: tuple[str, ...]) -> _Costs:
        d = self.data
        views = len({v for s in view_sets for v in VIEW_SETS[s]})
        # with cross-validation each fold fits on (folds-1)/folds of train+val, each penalty warm-started from
        # the fold's last, on features already computed: about half a full fit per fold
        rows = (d.train_images + (d.val_images if self.folds else 0)) * sum(len(VIEW_SETS[s]) for s in view_sets) \
            * max(1, self.folds // 2)
        forward = self.speed.forward_ips(size) / FORWARD_OVERHEAD
        return _Costs(start=START_SECONDS + DECODE_SECONDS_PER_IMAGE * (d.train_images + d.val_images + d.test_images),
                      probe=views * (d.train_images + d.val_images) / forward + PROBE_FIT_SECONDS
                      + rows * PROBE_FIT_PER_ROW,
                      epoch=d.train_images * TRAIN_OVERHEAD / self.speed.train_ips(size) + d.val_images / forward,
                      evaluation=(d.val_images + d.test_images) / forward,
                      baseline=self.baseline_seconds,
                      refit_scale=(d.train_images + d.val_images) / max(1, d.train_images) if self.folds else 0.0)


def _affordable_view_sets(orientation: str, costs: _CostModel, budget: float, native: int) -> tuple[str, ...]:
    """The view sets the probe compares: all that the orientation setting allows, fewer on "auto" when
    computing their features would take more than PROBE_SHARE of the budget at the model's own size."""
    if orientation != "auto":
        return (orientation,)
    for sets in (("fixed", "mirror", "free"), ("fixed", "mirror")):
        if costs.at(native, sets).probe <= PROBE_SHARE * budget:
            return sets
    return ("fixed",)


def _size_and_epochs(costs: _CostModel, view_sets: tuple[str, ...], target: int, budget: float,
                     model: ModelFacts) -> tuple[int, int, list[str]]:
    """(image size, fine-tuning epochs, reasons): the largest size at which the target epochs fit, else the
    largest with half of them, else with MIN_FINETUNE_EPOCHS, else the linear probe alone at the largest
    size it fits. Fine-tuning below MIN_FINETUNE_SIZE is not planned: the probe at a larger size does
    better. (On the inspection set, 8 epochs at 160 px reached a lower validation loss than 3 at 224 px.)"""
    for wanted in (target, math.ceil(target / 2), MIN_FINETUNE_EPOCHS):
        for size in _candidate_sizes(model.native_size, MIN_FINETUNE_SIZE):
            c = costs.at(size, view_sets)
            fit = math.floor((budget - c.fixed()) / c.epoch) if budget > c.fixed() else 0
            if fit >= wanted:
                return size, min(fit, target), []
    sizes = _candidate_sizes(model.native_size)
    size = next((s for s in sizes if costs.at(s, view_sets).fixed() <= budget), sizes[-1])
    return size, 0, [f"The budget of {duration(budget)} leaves no time to fine-tune at {sizes[-1]} px or "
                     "more, so the plan is the linear probe alone."]


def _stages(data: DataSummary, model: ModelFacts, c: _Costs, view_sets: tuple[str, ...], orientation: str,
            epochs: int, budget: float, baseline: bool = True) -> tuple[tuple[Stage, ...], dict[str, float]]:
    """The stages of an automatic plan and the estimated seconds of each (with the refit's when the budget
    leaves time for it after them: the size and epochs validation will judge come first)."""
    stages: list[Stage] = []
    estimate = {"start": c.start}
    if model.probe_ok:
        views = tuple(v for v in VIEW_SETS["free"] if any(v in VIEW_SETS[s] for s in view_sets))
        stages.append(ProbeStage(views, view_sets))
        estimate["probe"] = c.probe
    if model.pretrained and model.probe_ok:    # right after the probe: it can replace fine-tuning
        stages.append(BaselineStage(BASELINE_SIZE, BASELINE_EPOCHS, round(c.baseline, 1)))
        estimate["baseline"] = c.baseline
    if epochs:
        lr, decay = FAMILY_DEFAULTS.get(model_family(model.arch), OTHER_FAMILY)
        flips = ("probe" if model.probe_ok else "mirror") if orientation == "auto" else orientation
        # BatchNorm statistics stay as pretrained when fine-tuning starts from the probe's classifier,
        # which was fitted on features computed with them.
        stages.append(FineTuneStage(epochs, "all", lr, decay, 0.05, min(2.0, epochs / 4), 0.0, "auto",
                                    flips=flips, colour_jitter=not data.grayscale,
                                    patience=max(4, math.ceil(epochs / 3)),
                                    batchnorm="frozen" if model.probe_ok else "train"))
        estimate["finetune"] = epochs * c.epoch
    if model.pretrained and not model.probe_ok and baseline:
        stages.append(BaselineStage(BASELINE_SIZE, BASELINE_EPOCHS, round(c.baseline, 1)))
        estimate["baseline"] = c.baseline
    estimate["evaluation"] = c.evaluation
    refit = c.refit_scale * (c.probe + estimate.get("finetune", 0.0)) if epochs and model.probe_ok else 0.0
    if refit and sum(estimate.values()) + refit <= budget:     # what the budget leaves after the validated plan
        estimate["refit"] = refit
    estimate["total"] = sum(estimate.values())
    return tuple(stages), {k: round(v, 1) for k, v in estimate.items()}
