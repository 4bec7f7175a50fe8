"""The training plan: the stages a run goes through, and the automatic recipe that chooses them.

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
   helps at all.

`plan_custom` turns the user's own settings into a one-stage plan, so one loop runs both. A plan is
frozen, written to run.json and the log before training starts and read back on resume, so an
interrupted run continues exactly the plan it started with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from desktop_tl.core.config import BUDGET_PRESETS, ORIENTATIONS
from desktop_tl.core.errors import UserError
from desktop_tl.core.reporting import duration


# Views of a training image whose features the linear probe sees (see `views.py`).
VIEW_SETS = {"fixed": ("identity",), "mirror": ("identity", "hflip"),
             "free": ("identity", "hflip", "vflip", "rot90")}

L2_GRID = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
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
BASELINE_EPOCHS = 20
BASELINE_SIZE = 48
# Fine-tuning learning rates (AdamW, peak, for the classifier; earlier layers get less by the layer-wise
# decay) per model family, warmed up over two epochs. For EfficientNet-Lite0 on the development sets:
# the digits did best with 1e-3 (held-out accuracy 0.92-0.96 over 3 seeds; 0.88-0.92 with 3e-4), the
# solar cells with 3e-4 or 5e-4 (validation loss 0.415 after 8 epochs; with 1e-3 the training loss stayed
# flat and the probe was kept): 5e-4 is the compromise. The other families are scaled from timm's recipes.
FAMILY_DEFAULTS = {"efficientnet": (5e-4, 0.7), "mobilenet": (5e-4, 0.7), "resnet": (5e-4, 0.7),
                   "regnet": (5e-4, 0.7), "convnext": (2e-4, 0.7), "vit": (5e-5, 0.75)}
OTHER_FAMILY = (2e-4, 0.7)


@dataclass(frozen=True)
class DataSummary:
    """What the planner knows of the data: images per class and split, image size and colour."""

    train_counts: tuple[int, ...]     # training images per class
    val_images: int
    test_images: int
    median_side: int                  # median shorter side of the images, in pixels
    grayscale: bool                   # every image looked at has equal colour channels

    @property
    def train_images(self) -> int:
        """Training images in all."""
        return sum(self.train_counts)

    @property
    def imbalance(self) -> float:
        """Largest over smallest class in the training split (1.0 when balanced)."""
        present = [n for n in self.train_counts if n > 0]
        return max(present) / min(present) if present else 1.0


@dataclass(frozen=True)
class ModelFacts:
    """What the planner knows of the model."""

    arch: str
    native_size: int                  # the input size its weights were trained at
    pretrained: bool
    probe_ok: bool = True             # its classifier is one linear layer on pooled features (see probe.py)

    @property
    def family(self) -> str:
        """The family whose fine-tuning defaults apply ("efficientnet", "vit", ...)."""
        name = self.arch.lower()
        for family in FAMILY_DEFAULTS:
            if name.startswith(family) or (family == "efficientnet" and name.startswith("tf_efficientnet")):
                return family
        return "other"


@dataclass(frozen=True)
class Throughput:
    """Images per second measured on this machine: evaluation forward passes and full fine-tuning steps,
    at a few input sizes; other sizes are interpolated with a cost per image linear in the pixel count."""

    device: str
    forward: tuple[tuple[int, float], ...]    # (size, images/s)
    train: tuple[tuple[int, float], ...]

    def forward_ips(self, size: int) -> float:
        """Evaluation images per second at `size`."""
        return _interpolate(self.forward, size)

    def train_ips(self, size: int) -> float:
        """Fine-tuning images per second at `size` (forward, backward, optimizer)."""
        return _interpolate(self.train, size)


def _interpolate(points: tuple[tuple[int, float], ...], size: int) -> float:
    """Images/s at `size` from measured (size, images/s) points: seconds per image = a + b * size**2."""
    pts = sorted((s * s, 1.0 / ips) for s, ips in points if ips > 0)
    if not pts:
        raise ValueError("no throughput measured")
    if len(pts) == 1:
        return 1.0 / (pts[0][1] * size * size / pts[0][0])
    x = size * size
    (x0, y0), (x1, y1) = (pts[0], pts[1]) if x <= pts[0][0] else next(
        ((a, b) for a, b in zip(pts, pts[1:]) if x <= b[0]), (pts[-2], pts[-1]))
    slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
    seconds = max(y0 + slope * (x - x0), min(y0, y1) * 0.25)
    return 1.0 / seconds


@dataclass(frozen=True)
class ProbeStage:
    """Fit the classifier alone, to convergence, on features of the frozen backbone computed once."""

    views: tuple[str, ...]            # views of each training and validation image whose features are computed
    view_sets: tuple[str, ...]        # candidate sets (keys of VIEW_SETS), tested in order on validation
    l2_grid: tuple[float, ...] = L2_GRID
    kind: str = "probe"


@dataclass(frozen=True)
class FineTuneStage:
    """Train the network (the trainable part of it) for some epochs with AdamW, warm-up and cosine decay."""

    epochs: int
    freeze: str                       # which layers train (see core.freeze)
    lr: float
    layer_decay: float
    weight_decay: float
    warmup_epochs: float
    label_smoothing: float
    augment: str                      # "none" | "light" | "strong" | "auto" (the recipe's own, below)
    flips: str = "none"               # auto augmentation: "probe" (as the probe chose), "fixed", "mirror", "free"
    colour_jitter: bool = False       # auto augmentation: small brightness/contrast/saturation changes
    crop_min: float = 0.8             # auto augmentation: random crops keep this share of the area or more
    patience: int = 0                 # early stopping after this many epochs without a better val loss
    batchnorm: str = "train"          # "train": statistics update where the layer trains; "frozen": never
    kind: str = "finetune"


@dataclass(frozen=True)
class BaselineStage:
    """Train a small network from scratch on the same split, to see whether pretraining helps."""

    image_size: int
    epochs: int                       # at most; it stops after the epoch that passes `seconds`
    seconds: float
    kind: str = "baseline"


Stage = Union[ProbeStage, FineTuneStage, BaselineStage]
_STAGE_TYPES = {"probe": ProbeStage, "finetune": FineTuneStage, "baseline": BaselineStage}


@dataclass(frozen=True)
class Plan:
    """Everything a run does, decided before it starts (see the module docstring)."""

    recipe: str                       # "auto" | "custom"
    image_size: int | None            # None: the model's own input size
    crop_pct: float | None            # None: the model's own centre crop; 1.0: the whole image
    batch_size: int                   # 0: automatic (the largest that fits a GPU)
    class_weighted: bool
    choose_threshold: bool            # two classes: the decision threshold is chosen on validation
    stages: tuple[Stage, ...]
    budget_seconds: float | None = None
    estimated_seconds: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    @property
    def total_epochs(self) -> int:
        """Epochs as the run counts them: the probe is one, then each fine-tuning epoch."""
        return sum(1 if s.kind == "probe" else s.epochs if s.kind == "finetune" else 0 for s in self.stages)

    def stage_at(self, epoch: int) -> tuple[Stage, int]:
        """The stage that runs `epoch` (1-based) and the epoch's number within that stage (1-based)."""
        first = 1
        for stage in self.stages:
            length = 1 if stage.kind == "probe" else stage.epochs if stage.kind == "finetune" else 0
            if first <= epoch < first + length:
                return stage, epoch - first + 1
            first += length
        raise IndexError(f"epoch {epoch} is beyond the plan's {self.total_epochs}")

    def first_epoch_of(self, stage: Stage) -> int:
        """The run's epoch number at which `stage` begins."""
        first = 1
        for s in self.stages:
            if s is stage:
                return first
            first += 1 if s.kind == "probe" else s.epochs if s.kind == "finetune" else 0
        raise ValueError("stage not in plan")

    def stage(self, kind: str) -> Stage | None:
        """The first stage of a kind ("probe", "finetune", "baseline"), if the plan has one."""
        return next((s for s in self.stages if s.kind == kind), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written to run.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Plan":
        """Inverse of `to_dict`; UserError when the record is damaged."""
        try:
            stages = tuple(_STAGE_TYPES[s["kind"]](**_tuples(s)) for s in data["stages"])
            fields = {k: v for k, v in data.items() if k != "stages"}
            return cls(stages=stages, **_tuples(fields))
        except (KeyError, TypeError, AttributeError) as exc:
            raise UserError("The run's plan in run.json is damaged or was edited by hand.",
                            "Train the run again into a new folder.") from exc

    def describe(self) -> list[str]:
        """The plan in plain words, one line per item (for the log and the window)."""
        size = f"{self.image_size} px" if self.image_size else "the model's own size"
        lines = [f"Recipe: {self.recipe}" + (f", time budget {duration(self.budget_seconds)}"
                                              if self.budget_seconds else "") + f"; images at {size}."]
        for number, stage in enumerate(self.stages, start=1):
            lines.append(f"  {number}. {_describe_stage(stage)}"
                         + (f" (about {duration(self.estimated_seconds[stage.kind])})"
                            if stage.kind in self.estimated_seconds else ""))
        extras = []
        if self.class_weighted:
            extras.append("classes weighted against imbalance")
        if self.choose_threshold:
            extras.append("decision threshold chosen on validation (balanced accuracy)")
        if extras:
            lines.append("  " + "; ".join(extras).capitalize() + ".")
        if "total" in self.estimated_seconds:
            lines.append(f"  Estimated time: {duration(self.estimated_seconds['total'])}, from the speed "
                         "measured on this machine" + (" (early stopping can make it shorter)."
                                                        if self.stage("finetune") else "."))
        lines.extend(f"  Why: {reason}" for reason in self.reasons)
        return lines


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples of the frozen dataclasses."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _describe_stage(stage: Stage) -> str:
    if isinstance(stage, ProbeStage):
        if len(stage.view_sets) > 1:
            which = "with flipped and turned copies where validation shows they do not change the class"
        else:
            which = {"fixed": "original images only", "mirror": "with mirrored copies",
                     "free": "with flipped and turned copies"}[stage.view_sets[0]]
        return f"Linear probe: classifier fitted to convergence on frozen features ({which})"
    if isinstance(stage, FineTuneStage):
        what = {"all": "every layer", "head": "the classifier only"}.get(stage.freeze, f"layers {stage.freeze}")
        extra = []
        if stage.layer_decay < 1:
            extra.append(f"layer-wise decay {stage.layer_decay:g}")
        if stage.batchnorm == "frozen":
            extra.append("BatchNorm statistics kept")
        if stage.patience:
            extra.append(f"early stopping after {stage.patience} epochs without improvement")
        augment = stage.augment if stage.augment != "auto" else _describe_auto_augment(stage)
        rate = f"learning rate {stage.lr:g}"
        return (f"Fine-tune {what} for up to {stage.epochs} epoch{'s' * (stage.epochs != 1)}, {rate}"
                + (f" ({', '.join(extra)})" if extra else "") + f"; augmentation: {augment}")
    return (f"Check: a small network trained from scratch on the same split (up to {stage.epochs} epochs at "
            f"{stage.image_size} px), to see whether pretraining helps")


def _describe_auto_augment(stage: FineTuneStage) -> str:
    parts = [f"random crops of {stage.crop_min:.0%}-100%"]
    parts.append({"probe": "flips as the probe chose", "fixed": "no flips", "mirror": "mirroring",
                  "free": "flips and 90-degree rotations"}[stage.flips])
    if stage.colour_jitter:
        parts.append("light colour jitter")
    return ", ".join(parts)


def plan_custom(epochs: int, freeze: str, lr: float, layer_decay: float, weight_decay: float,
                warmup_epochs: float, label_smoothing: float, augment: str, patience: int,
                image_size: int | None, batch_size: int, class_weighted: bool) -> Plan:
    """The user's own settings as a one-stage plan (the "custom" recipe)."""
    stage = FineTuneStage(epochs, freeze, lr, layer_decay, weight_decay, warmup_epochs, label_smoothing,
                          augment, patience=patience)
    return Plan("custom", image_size, None, batch_size, class_weighted, False, (stage,))


@dataclass(frozen=True)
class _Costs:
    """Seconds of each part of an automatic plan at one input size."""

    start: float
    probe: float
    epoch: float
    evaluation: float
    baseline: float

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
    costs = _CostModel(data, speed, min(BASELINE_SHARE * budget_seconds, BASELINE_MAX_SECONDS)
                       if model.pretrained else 0.0)
    view_sets = _affordable_view_sets(orientation, costs, budget_seconds, model.native_size)
    target = _target_epochs(data.train_images, batch or 64, budget_seconds)
    size, epochs, reasons = _size_and_epochs(costs, view_sets, target, budget_seconds, model)
    if size > data.median_side:
        reasons.append(f"Images of about {data.median_side} px are enlarged to {size} px, closer to the "
                       f"{model.native_size} px the backbone was trained at.")
    elif size < model.native_size:
        reasons.append(f"{size} px instead of the model's {model.native_size} px, so that fine-tuning fits the budget.")
    class_weighted = data.imbalance > IMBALANCE_FOR_WEIGHTING
    if class_weighted:
        reasons.append(f"The largest class has {data.imbalance:.1f}x as many training images as the smallest: "
                       "the loss weighs classes equally.")
    if not model.probe_ok:
        reasons.append(f"{model.arch}'s classifier is not a single linear layer, so there is no linear probe: "
                       "the whole network is fine-tuned from a new classifier.")
        epochs = max(epochs, MIN_FINETUNE_EPOCHS)
    stages, estimate = _stages(data, model, costs.at(size, view_sets), view_sets, orientation, epochs)
    return Plan("auto", size, 1.0, batch, class_weighted, len(data.train_counts) == 2, stages,
                budget_seconds, estimate, tuple(reasons))


class _CostModel:
    """Seconds of each part of an automatic plan, from the data's size and the measured throughput."""

    def __init__(self, data: DataSummary, speed: Throughput, baseline_seconds: float) -> None:
        self.data, self.speed, self.baseline_seconds = data, speed, baseline_seconds

    def at(self, size: int, view_sets: tuple[str, ...]) -> _Costs:
        d = self.data
        views = len({v for s in view_sets for v in VIEW_SETS[s]})
        rows = d.train_images * sum(len(VIEW_SETS[s]) for s in view_sets)
        forward = self.speed.forward_ips(size) / FORWARD_OVERHEAD
        return _Costs(start=START_SECONDS + DECODE_SECONDS_PER_IMAGE * (d.train_images + d.val_images + d.test_images),
                      probe=views * (d.train_images + d.val_images) / forward + PROBE_FIT_SECONDS
                      + rows * PROBE_FIT_PER_ROW,
                      epoch=d.train_images * TRAIN_OVERHEAD / self.speed.train_ips(size) + d.val_images / forward,
                      evaluation=(d.val_images + d.test_images) / forward,
                      baseline=self.baseline_seconds)


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
            epochs: int) -> tuple[tuple[Stage, ...], dict[str, float]]:
    """The stages of an automatic plan and the estimated seconds of each."""
    stages: list[Stage] = []
    estimate = {"start": c.start}
    if model.probe_ok:
        views = tuple(v for v in VIEW_SETS["free"] if any(v in VIEW_SETS[s] for s in view_sets))
        stages.append(ProbeStage(views, view_sets))
        estimate["probe"] = c.probe
    if epochs:
        lr, decay = FAMILY_DEFAULTS.get(model.family, OTHER_FAMILY)
        flips = ("probe" if model.probe_ok else "mirror") if orientation == "auto" else orientation
        # BatchNorm statistics stay as pretrained when fine-tuning starts from the probe's classifier,
        # which was fitted on features computed with them.
        stages.append(FineTuneStage(epochs, "all", lr, decay, 0.05, min(2.0, epochs / 4), 0.0, "auto",
                                    flips=flips, colour_jitter=not data.grayscale,
                                    patience=max(4, math.ceil(epochs / 3)),
                                    batchnorm="frozen" if model.probe_ok else "train"))
        estimate["finetune"] = epochs * c.epoch
    if model.pretrained:
        stages.append(BaselineStage(BASELINE_SIZE, BASELINE_EPOCHS, round(c.baseline, 1)))
        estimate["baseline"] = c.baseline
    estimate["evaluation"] = c.evaluation
    estimate["total"] = sum(estimate.values())
    return tuple(stages), {k: round(v, 1) for k, v in estimate.items()}
