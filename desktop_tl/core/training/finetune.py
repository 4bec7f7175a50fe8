"""Fine-tuning: a stage of epochs of the optimizer over the training split, each followed by validation.

Warm-up then cosine learning rate (`lr_factor`), BatchNorm statistics kept or updated as the stage says,
out-of-memory recovery and gradients summed over torchrun ranks in the step (core.training.step), and
with the classifier alone training and nothing random in between, the backbone's features computed in
the first epoch and reused (the feature cache).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from desktop_tl.core.data.loaders import ImageDataset, sample_target
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import BatchProgress, Message
from desktop_tl.core.models.freeze import apply_freeze, freeze_batchnorm_stats, optimizer_param_groups
from desktop_tl.core.models.precision import autocast
from desktop_tl.core.training import distributed
from desktop_tl.core.training.plan import FineTuneStage
from desktop_tl.core.training.probe import pre_logits, splits_cleanly
from desktop_tl.core.training.session import TrainingSession
from desktop_tl.core.training.step import Stepper, count_correct


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the base learning rate."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_seed(seed: int, epoch: int) -> int:
    """The RNG seed of one epoch: order and augmentation depend only on (seed, epoch)."""
    return seed * 100_003 + epoch


class FineTuning:
    """A fine-tuning stage: its optimizer, step and loaders; `epoch` runs one epoch of it.

    With the classifier alone training and nothing random in between (no augmentation, no dropout) the
    backbone's features are computed in the first epoch and reused (the feature cache).
    """

    def __init__(self, s: TrainingSession, stage: FineTuneStage, optimizer_state: dict | None) -> None:
        self.s, self.stage = s, stage
        cfg = s.cfg
        apply_freeze(s.model, stage.freeze)
        self.augment = s.augmentation(stage)
        self.train_set = s.train_set(self.augment)
        self.feature_mode = (cfg.feature_cache and s.world == 1 and stage.freeze == "head" and self.augment == "none"
                             and splits_cleanly(s.model, s.prep))
        self.features: dict[str, dict[int, torch.Tensor]] = {"train": {}, "val": {}}
        self.optimizer = torch.optim.AdamW(optimizer_param_groups(s.model, stage.weight_decay, stage.layer_decay),
                                           lr=stage.lr)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        loss_fn = (nn.BCEWithLogitsLoss(pos_weight=s.positive_weights) if s.plan.multi_label else
                   nn.CrossEntropyLoss(label_smoothing=stage.label_smoothing, weight=s.class_weights))
        self.stepper = Stepper(s.model, self.optimizer, loss_fn, s.device, s.batch_size, s.micro_batch,
                               s.layout.channels_last, s.amp_dtype, s.scaler, s.world, cfg.compile)
        self.first_epoch = s.plan.first_epoch_of(stage)
        self.steps_per_epoch = math.ceil(len(self.train_set) / s.batch_size)

    def _features_ready(self, split: str) -> bool:
        dataset = self.train_set if split == "train" else self.s.val_set
        return self.feature_mode and len(self.features[split]) == len(dataset)

    def _loader(self, mode: str):
        s = self.s
        if mode == "head":   # cached features: in memory, no worker processes needed
            return s.loader("features", _FeatureSet(self.features["train"], self.train_set), True, workers=0)
        return s.loader(f"train:{self.augment}", self.train_set, True)

    def epoch(self, epoch: int):
        """Train one epoch, then validate; (train loss, train accuracy, val loss, val accuracy), or None
        when stopped."""
        outcome = yield from self._train(epoch)
        if outcome is None:
            return None
        return (*outcome, *self.validate())

    def _train(self, epoch: int):
        """One epoch of optimizer steps; (train loss, train accuracy), or None when stopped.

        One function on purpose: the order of things per batch (pause and stop, learning rate, the step, the
        compile decision, feature caching, figures summed over ranks) is what resume and torchrun rely on.
        """
        s, stage, cfg = self.s, self.stage, self.s.cfg
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        mode = ("head" if self._features_ready("train") else "extract") if self.feature_mode else "model"
        loader = self._loader(mode)
        loader.batch_sampler.set_seed(epoch_seed(cfg.seed, epoch))
        s.model.train()
        if stage.batchnorm == "frozen":
            for module in s.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        else:
            freeze_batchnorm_stats(s.model)
        total_loss, correct, seen = 0.0, 0, 0
        loaded: list[int] = []
        batches = len(loader)
        total_steps = stage.epochs * self.steps_per_epoch
        warmup = min(int(stage.warmup_epochs * self.steps_per_epoch), total_steps // 2)
        stage_epoch = epoch - self.first_epoch + 1
        started = time.perf_counter()
        try:
            for batch_no, batch in enumerate(s.batches(loader), start=1):
                if batch is None:
                    return None
                images, labels, items, skipped = batch
                batch_started = time.perf_counter()
                if skipped:
                    s.state["skipped_images"] += skipped
                    yield Message("warning", f"{skipped} image(s) could not be read any more and were skipped "
                                             f"(moved, deleted or damaged since import).")
                factor = lr_factor(s.state["step"], total_steps, warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = stage.lr * factor * group.get("lr_scale", 1.0)
                s.state["step"] += 1
                if len(labels) == 0 and s.world == 1:
                    continue
                loaded.extend(items.tolist())
                loss, batch_correct = yield from self.stepper.step(images, labels, mode)
                s.micro_batch = self.stepper.micro_batch
                if mode == "model":
                    yield from self.stepper.consider_compiling(time.perf_counter() - batch_started,
                                                               total_steps - s.state["step"])
                if mode == "extract":
                    self.features["train"].update(zip(items.tolist(), self.stepper.new_features))
                # sums over ranks: every figure is the one of the global batch
                figures = distributed.all_reduce_sum(torch.tensor([loss * len(labels), float(batch_correct),
                                                                   float(len(labels))], dtype=torch.float64))
                if figures[2] == 0:
                    continue
                total_loss += float(figures[0])
                correct += int(figures[1])
                seen += int(figures[2])
                elapsed = time.perf_counter() - started
                epochs_left = stage.epochs - stage_epoch
                this_left = elapsed * (len(self.train_set) - seen) / max(seen, 1)
                eta = this_left + epochs_left * elapsed * len(self.train_set) / max(seen, 1)
                eta += sum(v for k, v in s.plan.estimated_seconds.items() if k in ("baseline", "evaluation"))
                yield BatchProgress(epoch, s.plan.total_epochs, batch_no, batches, total_loss / seen, correct / seen,
                                    self.optimizer.param_groups[-1]["lr"],
                                    int(figures[2]) / max(time.perf_counter() - batch_started, 1e-9), eta)
        finally:
            if mode != "head":
                self.train_set.commit_cache(loaded)   # decoded images become valid for later epochs and runs
        if seen == 0:
            raise UserError("No training image could be read in this epoch.",
                            "Check that the dataset folder is still there and readable.")
        return total_loss / seen, correct / seen

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """Validation loss and accuracy of the model as it is now (NaN without validation images)."""
        s = self.s
        if len(s.val_set) == 0:
            return math.nan, math.nan
        s.model.eval()
        head = s.model.get_classifier() if self.feature_mode else None
        logits_all, labels = [], []
        if self._features_ready("val"):
            items = sorted(self.features["val"])
            features = torch.stack([self.features["val"][i] for i in items]).to(s.device)
            with autocast(s.device, s.amp_dtype):
                logits_all.append(head(features).float())
            labels.append(collate_targets([sample_target(s.index, s.val_set.samples[i]) for i in items]))
        else:
            loaded: list[int] = []
            try:
                for images, batch_labels, batch_items, _ in s.loader("val", s.val_set, False):
                    if len(batch_labels) == 0:
                        continue
                    images = images.to(s.device)
                    if s.layout.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with autocast(s.device, s.amp_dtype):
                        if self.feature_mode:
                            features = pre_logits(s.model, images).float()
                            self.features["val"].update(zip(batch_items.tolist(), features.cpu()))
                            logits = head(features)
                        else:
                            logits = s.model(images)
                    logits_all.append(logits.float())
                    labels.append(batch_labels)
                    loaded.extend(batch_items.tolist())
            finally:
                s.val_set.commit_cache(loaded)
        if not labels:
            return math.nan, math.nan
        logits, all_labels = torch.cat(logits_all).cpu(), torch.cat(labels)
        if s.plan.multi_label:
            loss = float(s.eval_loss_fn(logits.to(s.device), all_labels.to(s.device)))
            return loss, count_correct(logits, all_labels) / len(all_labels)
        probs = torch.softmax(logits, 1)
        loss = float(s.eval_loss_fn(torch.log(probs.clamp_min(1e-12)).to(s.device), all_labels.to(s.device)))
        return loss, float((probs.argmax(1) == all_labels).float().mean())


def collate_targets(targets: list) -> torch.Tensor:
    """Targets of several samples as one tensor: class indices, or rows of 0/1 labels."""
    return torch.stack(targets) if targets and isinstance(targets[0], torch.Tensor) else torch.tensor(targets)


class _FeatureSet(torch.utils.data.Dataset):
    """Cached backbone features of a split, item by item, shaped like ImageDataset items."""

    def __init__(self, features: dict[int, torch.Tensor], images: ImageDataset) -> None:
        self.features, self.images = features, images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item):
        item = item[0] if isinstance(item, tuple) else item
        feature = self.features.get(item)
        return None if feature is None else (feature, sample_target(self.images.index, self.images.samples[item]), item)
