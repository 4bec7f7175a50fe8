"""The training plan: the stages a run goes through, decided before it starts (see `planner` for the
automatic recipe that makes one). A plan is frozen, written to run.json and the log before training
starts and read back on resume, so an interrupted run continues exactly the plan it started with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from desktop_tl.core.errors import UserError
from desktop_tl.core.reporting import duration

# Views of an image whose features the linear probe sees (core.models.ensemble.view), by the orientation they assume.
VIEW_SETS = {"fixed": ("identity",), "mirror": ("identity", "hflip"),
             "free": ("identity", "hflip", "vflip", "rot90")}

L2_GRID = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


@dataclass(frozen=True)
class DataSummary:
    """What the planner knows of the data: images per class and split, image size and colour."""

    train_counts: tuple[int, ...]     # training images per class
    val_images: int
    test_images: int
    median_side: int                  # median shorter side of the images, in pixels
    grayscale: bool                   # every image looked at has equal colour channels
    multi_label_images: int = 0       # multi-label: training images (train_counts are then images per label)

    @property
    def train_images(self) -> int:
        """Training images in all."""
        return self.multi_label_images or sum(self.train_counts)

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
    freeze: str                       # which layers train (see core.models.freeze)
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
    cross_validation: int = 0         # folds over train+val for the recipe's choices (0: the validation split)
    multi_label: bool = False         # several labels per image: sigmoid outputs, binary cross-entropy

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
        """JSON-ready form, exactly as run.json holds it (lists, not tuples)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
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
            after_probe = number > 1 and self.stages[number - 2].kind == "probe"
            lines.append(f"  {number}. {_describe_stage(stage, after_probe)}"
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
        if "refit" in self.estimated_seconds:
            lines.append(f"  Then the model is trained again on the training and validation images together, with "
                         f"the settings chosen and the epochs validation found (about "
                         f"{duration(self.estimated_seconds['refit'])}), so that it learns from every label but the "
                         "test split's.")
        if self.multi_label:
            lines.append("  Several labels per image: one sigmoid output per label, trained with binary "
                         "cross-entropy; each label's threshold is chosen on validation.")
        if self.recipe == "auto" and self.budget_seconds and self.stage("finetune") is not None and \
                not self.multi_label:
            lines.append("  When fine-tuning ends with time to spare, the rest of the budget fine-tunes further networks "
                         "(other seeds, the same settings) to average, while each still lowers the validation loss; "
                         "the log says why the rounds end.")
        if self.cross_validation:
            lines.append(f"  Choices (probe penalty and views; the probe, the small network or their average) by "
                         f"{self.cross_validation}-fold "
                         "cross-validation over the training and validation images, patients and near duplicates "
                         "kept within one fold; another candidate replaces the pretrained path only when it is "
                         "better beyond the noise. When the small network is the model, the rest of the budget "
                         "trains more of them (other seeds) to average, while each still lowers the out-of-fold "
                         "loss.")
        lines.extend(f"  Why: {reason}" for reason in self.reasons)
        return lines


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples of the frozen dataclasses."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _describe_stage(stage: Stage, after_probe: bool = False) -> str:
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
    check = (f"Check: a small network trained from scratch on the same split (up to {stage.epochs} epochs at "
             f"{stage.image_size} px), to see whether pretraining helps")
    return check + ("; if it does better than the probe beyond the noise, it becomes the model and fine-tuning "
                    "is skipped; if averaging it with the pretrained model does better than either alone, the "
                    "model is that average"
                    if after_probe else "")


def _describe_auto_augment(stage: FineTuneStage) -> str:
    parts = [f"random crops of {stage.crop_min:.0%}-100%"]
    parts.append({"probe": "flips as the probe chose", "fixed": "no flips", "mirror": "mirroring",
                  "free": "flips and 90-degree rotations"}[stage.flips])
    if stage.colour_jitter:
        parts.append("light colour jitter")
    return ", ".join(parts)
