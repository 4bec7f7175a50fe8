"""Plain event dataclasses yielded by the training loop and consumed by the CLI and the window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    """A run (new or resumed) is about to train."""

    total_epochs: int
    start_epoch: int
    train_images: int
    val_images: int
    device: str
    trainable_params: int
    total_params: int
    batch_size: int


@dataclass(frozen=True)
class Planned:
    """The plan the run follows (shown before training starts, and again on resume)."""

    lines: tuple[str, ...]    # the plan in plain words (core.training.plan.Plan.describe)
    plan: dict[str, Any]      # Plan.to_dict()
    resumed: bool = False


@dataclass(frozen=True)
class BatchProgress:
    """One training batch finished (or, in the linear probe's epoch, one batch of features computed)."""

    epoch: int            # 1-based
    epochs: int
    batch: int            # 1-based
    batches: int
    loss: float           # running mean over the epoch so far (NaN while features are computed)
    accuracy: float       # running training accuracy over the epoch so far (NaN while features are computed)
    lr: float
    images_per_sec: float
    eta_seconds: float    # for the whole run
    phase: str = "train"  # "train" | "features" (the linear probe's feature pass) | "refit" (core.training.refit:
                          # a batch of the refit on train+val, its epoch counted within the refit) | "member"
                          # (core.training.members: a further fine-tuned network, counted within its own epochs)


@dataclass(frozen=True)
class EpochEnd:
    """Training and validation figures for one epoch (validation only, never test)."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float
    is_best: bool
    stage: str = "finetune"   # "probe" | "finetune"


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint was written atomically."""

    epoch: int
    name: str             # file name inside the run folder
    best: bool


@dataclass(frozen=True)
class Message:
    """A note for the user during training (a warning, a recovery)."""

    level: str            # "info" | "warning"
    text: str


@dataclass(frozen=True)
class Finished:
    """The run ended: completed, stopped early, or stopped by the user."""

    epochs_done: int
    total_epochs: int
    completed: bool       # all planned epochs ran, or early stopping ended the run
    stopped_by_user: bool
    best_epoch: int
    best_val_loss: float
    metrics: dict[str, Any] | None = field(default=None)   # metrics.json content once the test split was evaluated


@dataclass(frozen=True)
class Failed:
    """A run or job could not go on; `what` and `hint` are for the user. `cancelled`: the user stopped it."""

    what: str
    hint: str = ""
    cancelled: bool = False


TrainEvent = RunStarted | Planned | BatchProgress | EpochEnd | CheckpointSaved | Message | Finished | Failed


@dataclass(frozen=True)
class TrialLogged:
    """A silent trial's watcher logged an image or a skipped file (`core.deploy.watch`): the log entry, and the
    heat map of the class the model chose when the watcher was asked for them (a PIL image, never logged)."""

    entry: dict[str, Any]
    heatmap: Any = None
