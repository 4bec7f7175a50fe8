"""The negative-transfer check: a small network trained from scratch on the same split.

If a few seconds of training a small convolutional network without any pretraining do as well on the
validation split as the pretrained backbone, pretraining does not help on this data, and the user is
told so plainly (log, metrics.json, evaluation panel).
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
from desktop_tl.core.events import Message
from desktop_tl.core.training.plan import BaselineStage
from desktop_tl.core.training.session import TrainingSession

BATCH = 32
LR = 3e-3
SHIFT = 4                  # random translation by up to this many pixels, as augmentation
MARGIN = 0.02              # balanced accuracy within this of the baseline counts as "no better"


class SmallCNN(nn.Module):
    """Four 3x3 convolution blocks (16-128 channels, BatchNorm, ReLU, max-pool), global pooling, linear."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in (16, 32, 64, 128):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


@dataclass(frozen=True)
class TransferCheck:
    """Validation figures of the pretrained model and of the from-scratch baseline."""

    pretrained_balanced_accuracy: float
    baseline_balanced_accuracy: float
    baseline_epochs: int
    baseline_seconds: float

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
        figures = (f"validation balanced accuracy {self.pretrained_balanced_accuracy:.1%} with the pretrained "
                   f"backbone vs {self.baseline_balanced_accuracy:.1%} for a small network trained from scratch "
                   f"({self.baseline_epochs} epochs, {self.baseline_seconds:.0f} s)")
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


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """Mean recall over the classes present."""
    recalls = [float((predicted[labels == k] == k).mean()) for k in range(classes) if (labels == k).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


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


def train_from_scratch(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                       classes: int, epochs: int, class_weights: torch.Tensor | None = None, seed: int = 0,
                       mirror: bool = False, should_stop=lambda: False,
                       max_seconds: float = float("inf")) -> tuple[float, int]:
    """(validation balanced accuracy, epochs run) of a SmallCNN trained up to `epochs` epochs (AdamW,
    one-cycle schedule) on the tensors; it stops after the epoch that passes `max_seconds`."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    steps = epochs * math.ceil(len(train_y) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=max(1, steps), pct_start=0.1)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights)
    done = 0
    while done < epochs and (done == 0 or time.perf_counter() - started < max_seconds):
        done += 1
        model.train()
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, len(order), BATCH):
            if should_stop():
                return float("nan"), done
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
    with torch.no_grad():
        probs = torch.cat([model(val_x[i:i + 256]).softmax(1) for i in range(0, len(val_x), 256)]).numpy()
    names = [str(k) for k in range(classes)]
    return balanced_accuracy(val_y.numpy(), predict_labels(probs, names), classes), done


def baseline_check(s: TrainingSession, stage: BaselineStage):
    """Train the small from-scratch network on the split at low resolution; True when done (False: stopped)."""
    yield Message("info", f"Checking whether pretraining helps: training a small network from scratch "
                          f"(up to {stage.epochs} epochs at {stage.image_size} px, about {stage.seconds:.0f} s)…")
    started = time.perf_counter()
    tensors = {}
    for name, dataset in (("train", s.train_set(None)), ("val", s.val_set)):
        tensors[name] = _small_copies(s, dataset, stage.image_size)
        if tensors[name] is None:
            return False
    (train_x, train_y), (val_x, val_y) = tensors["train"], tensors["val"]
    if len(val_y) == 0:
        return True
    mirror = (s.state.get("probe") or {}).get("view_set") in ("mirror", "free")
    weights = s.class_weights.cpu() if s.class_weights is not None else None
    score, epochs = train_from_scratch(train_x, train_y, val_x, val_y, len(s.info.classes), stage.epochs, weights,
                                       s.cfg.seed, mirror, lambda: s.control.stop_requested,
                                       max(0.0, stage.seconds - (time.perf_counter() - started)))
    if math.isnan(score):
        return False
    s.state["transfer_check"] = {"baseline_balanced_accuracy": score, "baseline_epochs": epochs,
                                 "baseline_seconds": round(time.perf_counter() - started, 1)}
    return True


def _small_copies(s: TrainingSession, dataset: ImageDataset, size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Every readable image of `dataset` (evaluation transform) shrunk to `size` px, with its label."""
    images, labels, loaded = [], [], []
    try:
        for batch in s.batches(make_loader(dataset, 64, False, 0, 0)):
            if batch is None:
                return None
            batch_images, batch_labels, items, _ = batch
            if len(batch_labels):
                images.append(nn.functional.interpolate(batch_images, size=(size, size), mode="bilinear",
                                                        antialias=True, align_corners=False))
                labels.append(batch_labels)
                loaded.extend(items.tolist())
    finally:
        dataset.commit_cache(loaded)
    if not labels:
        return torch.zeros(0, 3, size, size), torch.zeros(0, dtype=torch.long)
    return torch.cat(images), torch.cat(labels)
