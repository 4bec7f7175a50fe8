"""The negative-transfer check: a small network trained from scratch on the same split.

It runs right after the linear probe. If the small network does clearly better on the validation split than
the pretrained backbone's probe, pretraining does not help on this data: the user is told so plainly (log,
metrics.json, evaluation panel) and the small network becomes the run's model, fine-tuning skipped (on
scikit-learn's 8x8 digits it reaches 0.97 on 1,497 held-out digits in seconds, where fine-tuning the
pretrained backbone for minutes reached 0.90-0.95). Otherwise the run fine-tunes the pretrained model, and
at the end the check compares that model with the small one. On small sets the check is by cross-validation
(`baseline_folds`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from desktop_tl.core.data.loaders import ImageDataset, make_loader
from desktop_tl.core.decision import predict_labels
from desktop_tl.core.evaluation.metrics import balanced_accuracy
from desktop_tl.core.events import Message
from desktop_tl.core.models.scratch import ScratchNet, shrink
from desktop_tl.core.training.plan import BaselineStage
from desktop_tl.core.training.session import TrainingSession

BATCH = 32
LR = 3e-3
SHIFT = 4                  # random translation by up to this many pixels, as augmentation
MARGIN = 0.02              # balanced accuracy within this of the baseline counts as "no better"
MIN_EPOCHS = 15            # 8x8 digits: held-out accuracy 0.96-0.97 after 20 epochs, 0.66 (validation) after 2
TIMED_STEPS = 3


@dataclass(frozen=True)
class TransferCheck:
    """Validation figures of the pretrained model and of the from-scratch baseline."""

    pretrained_balanced_accuracy: float
    baseline_balanced_accuracy: float
    baseline_epochs: int
    baseline_seconds: float
    delivered_scratch: bool = False      # the small network became the run's model

    @property
    def verdict(self) -> str:
        """"helps" (pretrained better by more than MARGIN), "hurts" (the baseline better by more than MARGIN),
        else "no clear gain"."""
        gain = self.pretrained_balanced_accuracy - self.baseline_balanced_accuracy
        return "helps" if gain > MARGIN else "hurts" if gain < -MARGIN else "no clear gain"

    @property
    def helps(self) -> bool:
        """True when pretraining did clearly better than training from scratch."""
        return self.verdict == "helps"

    def describe(self) -> str:
        """One or two sentences for the user."""
        pretrained = "the pretrained backbone's linear probe" if self.delivered_scratch else "the pretrained backbone"
        figures = (f"validation balanced accuracy {self.pretrained_balanced_accuracy:.1%} with {pretrained} vs "
                   f"{self.baseline_balanced_accuracy:.1%} for a small network trained from scratch "
                   f"({self.baseline_epochs} epochs, {self.baseline_seconds:.0f} s)")
        if self.delivered_scratch:
            return (f"Pretraining does not help on this data: {figures}. The run's model is that small network; "
                    "fine-tuning the pretrained backbone was skipped.")
        if self.verdict == "helps":
            return f"Pretraining helps: {figures}."
        if self.verdict == "no clear gain":
            return (f"Pretraining shows no clear gain here: {figures}. The task may be easy, or the backbone's "
                    "features may not suit these images.")
        return (f"Pretraining does not help on this data: {figures}. The images may be too unlike the "
                "photographs the backbone learned from; try another backbone, more images, or check the labels.")

    def to_dict(self) -> dict:
        """JSON-ready form, with the verdict."""
        return dict(asdict(self), verdict=self.verdict, helps=self.helps)


@dataclass(frozen=True)
class ScratchFit:
    """A small network trained from scratch, with its figures on the training and validation images."""

    model: ScratchNet
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_balanced_accuracy: float


def _shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The batch moved by a random whole number of pixels (edges repeated)."""
    padded = nn.functional.pad(images, (SHIFT,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * SHIFT + 1, (2,), generator=generator).tolist()
    return padded[..., dy:dy + images.shape[-2], dx:dx + images.shape[-1]]


@torch.no_grad()
def _precise_batchnorm(model: nn.Module, images: torch.Tensor) -> None:
    """BatchNorm statistics averaged over the whole training set: after a few hundred steps the running
    averages have not settled yet, and evaluation would use them."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None          # a cumulative average
    model.train()
    for start in range(0, len(images), 256):
        model(images[start:start + 256])


def affordable_epochs(epochs: int, epoch_seconds: float, max_seconds: float) -> int:
    """How many of `epochs` fit in `max_seconds`: at least MIN_EPOCHS (fewer would not show what training
    from scratch can do) when they fit in twice the time, else at least one."""
    fit = math.floor(max_seconds / max(epoch_seconds, 1e-6))
    floor = MIN_EPOCHS if MIN_EPOCHS * epoch_seconds <= 2 * max_seconds else 1
    return min(epochs, max(floor, fit))


def _epoch_seconds(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module) -> float:
    """Seconds an epoch will take, from the median of a few timed training steps after a warm-up one."""
    times = []
    for _ in range(TIMED_STEPS + 1):
        started = time.perf_counter()
        loss_fn(model(images[:BATCH]), labels[:BATCH]).backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:])) * math.ceil(len(labels) / BATCH) * 1.2


def _figures(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module,
             classes: int) -> tuple[float, float, float]:
    """(loss, accuracy, balanced accuracy) of `model` in eval mode on the tensors (NaN when empty)."""
    if len(labels) == 0:
        return math.nan, math.nan, math.nan
    with torch.no_grad():
        logits = torch.cat([model(images[i:i + 256]) for i in range(0, len(images), 256)])
    predicted = predict_labels(logits.softmax(1).numpy(), [str(k) for k in range(classes)])
    return (float(loss_fn(logits, labels)), float((predicted == labels.numpy()).mean()),
            balanced_accuracy(labels.numpy(), predicted, classes))


def train_from_scratch(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                       classes: int, epochs: int, class_weights: torch.Tensor | None = None, seed: int = 0,
                       mirror: bool = False, should_stop=lambda: False,
                       max_seconds: float = float("inf")) -> ScratchFit | None:
    """A ScratchNet trained (AdamW, one-cycle schedule) on images already at its size, for `epochs` epochs or
    as many as fit in `max_seconds`; None when `should_stop` said so."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ScratchNet(classes, train_x.shape[-1])
    loss_fn = nn.CrossEntropyLoss(weight=class_weights)
    if math.isfinite(max_seconds):       # as many epochs as fit, so that the schedule runs its whole course
        epochs = affordable_epochs(epochs, _epoch_seconds(model, train_x, train_y, loss_fn), max_seconds)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    steps = epochs * math.ceil(len(train_y) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=max(1, steps), pct_start=0.1)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, len(order), BATCH):
            if should_stop():
                return None
            items = order[start:start + BATCH]
            images = _shifted(train_x[items], generator)
            if mirror:
                flip = torch.rand(len(items), generator=generator) < 0.5
                images[flip] = images[flip].flip(-1)
            loss = loss_fn(model(images), train_y[items])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    _precise_batchnorm(model, train_x)
    model.eval()
    train_loss, train_acc, _ = _figures(model, train_x, train_y, loss_fn, classes)
    val_loss, val_acc, val_balanced = _figures(model, val_x, val_y, loss_fn, classes)
    return ScratchFit(model, epochs, train_loss, train_acc, val_loss, val_acc, val_balanced)


def baseline_check(s: TrainingSession, stage: BaselineStage):
    """Train the small from-scratch network on the split at low resolution and record its validation figure
    in the session's state; returns the fit, or None when stopped (or without validation images)."""
    yield Message("info", f"Checking whether pretraining helps: training a small network from scratch "
                          f"(up to {stage.epochs} epochs at {stage.image_size} px, about {stage.seconds:.0f} s)…")
    started = time.perf_counter()
    tensors = {}
    for name, dataset in (("train", s.train_set(None)), ("val", s.val_set)):
        tensors[name] = small_copies(s, dataset, stage.image_size)
        if tensors[name] is None:
            return None
    (train_x, train_y), (val_x, val_y) = tensors["train"], tensors["val"]
    if len(val_y) == 0:
        return None
    mirror, weights = mirroring_and_class_weights(s)
    fit = train_from_scratch(train_x, train_y, val_x, val_y, len(s.info.classes), stage.epochs, weights,
                             s.cfg.seed, mirror, lambda: s.control.stop_requested,
                             max(0.0, stage.seconds - (time.perf_counter() - started)))
    if fit is None:
        return None
    s.state["transfer_check"] = {"baseline_balanced_accuracy": fit.val_balanced_accuracy,
                                 "baseline_epochs": fit.epochs,
                                 "baseline_seconds": round(time.perf_counter() - started, 1)}
    return fit


def small_network_on_all(s: TrainingSession, size: int, epochs: int) -> ScratchFit | None:
    """The small network trained again, for `epochs` epochs at `size` px, on every training and validation
    image (the refit of an average, core.training.refit); None when stopped."""
    parts = [small_copies(s, dataset, size) for dataset in (s.train_set(None), s.val_set)]
    if any(p is None for p in parts):
        return None
    x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    mirror, weights = mirroring_and_class_weights(s)
    return train_from_scratch(x, y, x[:0], y[:0], len(s.info.classes), epochs, weights, s.cfg.seed, mirror,
                              lambda: s.control.stop_requested)


def mirroring_and_class_weights(s: TrainingSession) -> tuple[bool, torch.Tensor | None]:
    """How the run's small networks train: mirrored when the probe found mirroring harmless, and with the
    run's class weights (on the CPU, where they train)."""
    mirror = (s.state.get("probe") or {}).get("view_set") in ("mirror", "free")
    return mirror, s.class_weights.cpu() if s.class_weights is not None else None


def test_time_views(s: TrainingSession) -> tuple[str, ...]:
    """The views the run's predictions are averaged over (chosen with the probe by cross-validation)."""
    return tuple((s.state.get("probe") or {}).get("test_time_views") or ("identity",))


def scratch_wins(s: TrainingSession, fit: ScratchFit) -> bool:
    """True when the small network did clearly better (by more than MARGIN) on validation than the linear
    probe just fitted: it then becomes the run's model. Recorded in the session's transfer check."""
    probe = (s.state.get("probe") or {}).get("val_balanced_accuracy")
    if probe is None or not fit.val_balanced_accuracy > probe + MARGIN:
        return False
    s.state["transfer_check"].update(pretrained_balanced_accuracy=probe, delivered_scratch=True)
    return True


def small_copies(s: TrainingSession, dataset: ImageDataset, size: int, paths: list[str] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Every readable image of `dataset` (evaluation transform) shrunk to `size` px as ScratchNet shrinks its
    input, with its label; the images' paths are appended to `paths` when given."""
    images, labels, loaded = [], [], []
    try:
        for batch in s.batches(make_loader(dataset, 64, False, 0, 0)):
            if batch is None:
                return None
            batch_images, batch_labels, items, _ = batch
            if len(batch_labels):
                images.append(shrink(batch_images, size))
                labels.append(batch_labels)
                loaded.extend(items.tolist())
    finally:
        dataset.commit_cache(loaded)
    if paths is not None:
        paths.extend(dataset.samples[i].path for i in loaded)
    if not labels:
        return torch.zeros(0, 3, size, size), torch.zeros(0, dtype=torch.long)
    return torch.cat(images), torch.cat(labels)
