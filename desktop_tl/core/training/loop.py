"""The epoch loop: the plan's stages one epoch at a time, as a generator of plain events.

Each epoch is a function of the session: `probe_epoch` (features once, then the logistic regression),
`FineTuning.epoch` (the optimizer over the training split, then `validate`). After the epochs come the
from-scratch baseline check and `complete` (the decision threshold on validation, then the test split,
evaluated once). The stop flag is checked every batch; best.safetensors then last.safetensors are
written after every epoch, so a run interrupted anywhere resumes from its last finished epoch.
"""

from __future__ import annotations

import math
import time
from typing import Iterator

import torch
from torch import nn

from desktop_tl.core.training import distributed
from desktop_tl.core.data.loaders import ImageDataset, make_loader
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import (BatchProgress, CheckpointSaved, EpochEnd, Message, Planned, RunStarted,
                                    TrainEvent)
from desktop_tl.core.models.freeze import apply_freeze, freeze_batchnorm_stats, optimizer_param_groups
from desktop_tl.core.runs.folder import write_run_info
from desktop_tl.core.training.completion import complete
from desktop_tl.core.training.plan import BaselineStage, FineTuneStage, ProbeStage
from desktop_tl.core.training.probe import VIEWS, fit_probe, pre_logits, splits_cleanly
from desktop_tl.core.training.session import TrainingSession
from desktop_tl.core.training.devices import device_label
from desktop_tl.core.training.step import Stepper



def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the base learning rate."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_seed(seed: int, epoch: int) -> int:
    """The RNG seed of one epoch: order and augmentation depend only on (seed, epoch)."""
    return seed * 100_003 + epoch


def run_events(session: TrainingSession, optimizer_state: dict | None) -> Iterator[TrainEvent]:
    """The whole run from its next epoch: RunStarted, the plan, epochs, the baseline check, completion."""
    s = session
    start_epoch = s.state["epoch"] + 1
    yield RunStarted(s.plan.total_epochs, start_epoch, len(s.train_samples), len(s.val_set),
                     device_label(s.device), s.trainable, s.total, s.batch_size)
    yield Planned(tuple(s.plan.describe()), s.plan.to_dict(), resumed=start_epoch > 1)
    for message in s.index.warnings:
        yield Message("warning", message)
    yield from s.notes
    try:
        yield from _epochs(s, start_epoch, optimizer_state)
    finally:
        s.close()   # ends persistent loader workers


def _epochs(s: TrainingSession, start_epoch: int, optimizer_state: dict | None) -> Iterator[TrainEvent]:
    if len(s.val_set) == 0:
        yield Message("warning", "No validation images: the best checkpoint is simply the latest one.")
    s.info.status = "running"
    if s.main:
        write_run_info(s.info)
    clock = _Clock(s.state["seconds"])
    finetuning: FineTuning | None = None
    for epoch in range(start_epoch, s.plan.total_epochs + 1):
        if s.state["ended_early"]:
            break
        stage, _ = s.plan.stage_at(epoch)
        epoch_started = time.perf_counter()
        if isinstance(stage, ProbeStage):
            outcome = yield from probe_epoch(s, stage, epoch)
            optimizer = None
        else:
            if finetuning is None:
                finetuning = FineTuning(s, stage, optimizer_state)
            outcome = yield from finetuning.epoch(epoch)
            optimizer = finetuning.optimizer
        if outcome is None:
            yield s.finished(completed=False, stopped_by_user=True)
            return
        train_loss, train_acc, val_loss, val_acc = outcome
        is_best = val_loss < s.state["best_val_loss"] or len(s.val_set) == 0
        if is_best:
            s.state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
        else:
            s.state["bad_epochs"] += 1
        lr = optimizer.param_groups[-1]["lr"] if optimizer is not None else 0.0
        seconds = time.perf_counter() - epoch_started
        s.state["history"].append({"epoch": epoch, "stage": stage.kind, "train_loss": train_loss,
                                   "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc,
                                   "lr": lr, "seconds": round(seconds, 2)})
        s.state["epoch"] = epoch
        s.state["seconds"] = clock.total()
        ending = _ending(s, stage, epoch, seconds)
        s.state["ended_early"] = ending[0] if ending else None
        yield EpochEnd(epoch, s.plan.total_epochs, train_loss, train_acc, val_loss, val_acc, lr, seconds, is_best,
                       stage.kind)
        if s.main:   # under torchrun only rank 0 writes; the others wait until the files are there
            s.save(is_best, optimizer)
        distributed.barrier()
        yield CheckpointSaved(epoch, "last.safetensors", False)
        if is_best:
            yield CheckpointSaved(epoch, "best.safetensors", True)
        if ending:
            yield Message("info", ending[1])
    baseline = s.plan.stage("baseline")
    if isinstance(baseline, BaselineStage) and s.state["transfer_check"] is None and s.main:
        done = yield from baseline_check(s, baseline)
        if not done:
            yield s.finished(completed=False, stopped_by_user=True)
            return
    yield from complete(s)


def _ending(s: TrainingSession, stage, epoch: int, seconds: float) -> tuple[str, str] | None:
    """Why the epochs end after this one, before the plan's last: (reason, message), or None."""
    if not isinstance(stage, FineTuneStage) or epoch >= s.plan.total_epochs:
        return None
    if stage.patience and s.state["bad_epochs"] >= stage.patience:
        return "early stopping", (f"Early stopping: validation loss has not improved for "
                                  f"{s.state['bad_epochs']} epochs.")
    budget = s.plan.budget_seconds
    after = sum(v for k, v in s.plan.estimated_seconds.items() if k in ("baseline", "evaluation"))
    if budget and s.state["seconds"] + seconds + after > budget:
        return "time budget", (f"Time budget: {s.state['seconds'] / 60:.1f} of {budget / 60:g} minutes used and "
                               f"another epoch (about {seconds:.0f} s) would not fit with the final checks, so "
                               "fine-tuning ends here; the best epoch so far is kept.")
    return None


class _Clock:
    """Seconds a run has trained, across resumes, and the pace for the ETA."""

    def __init__(self, before: float) -> None:
        self.before, self.started = float(before or 0.0), time.perf_counter()

    def total(self) -> float:
        return self.before + time.perf_counter() - self.started


def _batches(s: TrainingSession, loader, stop_check: bool = True):
    """Batches of `loader`, honouring pause and stop; yields None when a stop was asked for."""
    for batch in loader:
        s.control.wait_while_paused()
        if stop_check and s.control.stop_requested:
            yield None
            return
        yield batch


# -- the linear probe ---------------------------------------------------------------------------------
@torch.no_grad()
def probe_epoch(s: TrainingSession, stage: ProbeStage, epoch: int):
    """Features of every training view and validation image through the frozen backbone (once), then the
    logistic regression chosen on validation, written into the classifier. Returns the epoch's figures,
    or None when stopped."""
    s.model.eval()
    amp = dict(dtype=s.amp_dtype or torch.float32, enabled=s.amp_dtype is not None)
    parts = {"train": (s.train_set(None), stage.views), "val": (s.val_set, stage.views)}
    loaders = {name: make_loader(ds, max(s.batch_size, 32), False, 0, 0 if s.world > 1 else
                                 (s.cfg.num_workers if s.cfg.num_workers >= 0 else -1))
               for name, (ds, _) in parts.items()}
    total = sum(len(loader) for loader in loaders.values())
    features: dict[str, dict[str, list[torch.Tensor]]] = {name: {v: [] for v in views}
                                                          for name, (_, views) in parts.items()}
    labels: dict[str, list[torch.Tensor]] = {"train": [], "val": []}
    done, images = 0, 0
    started = time.perf_counter()
    for name, (dataset, views) in parts.items():
        loaded: list[int] = []
        try:
            for batch in _batches(s, loaders[name]):
                if batch is None:
                    return None
                batch_images, batch_labels, items, skipped = batch
                done += 1
                s.state["skipped_images"] += skipped if name == "train" else 0
                if len(batch_labels):
                    batch_images = batch_images.to(s.device)
                    for view in views:
                        viewed = VIEWS[view](batch_images)
                        if s.layout.channels_last:
                            viewed = viewed.contiguous(memory_format=torch.channels_last)
                        with torch.autocast(s.device.type, **amp):
                            features[name][view].append(pre_logits(s.model, viewed).float().cpu())
                    labels[name].append(batch_labels)
                    loaded.extend(items.tolist())
                    images += len(batch_labels) * len(views)
                elapsed = time.perf_counter() - started
                yield BatchProgress(epoch, s.plan.total_epochs, done, total, math.nan, math.nan, 0.0,
                                    images / max(elapsed, 1e-9),
                                    _eta(s, elapsed * (total - done) / max(done, 1)), phase="features")
        finally:
            dataset.commit_cache(loaded)
    if not labels["train"]:
        raise UserError("No training image could be read.", "Check that the dataset folder is still there and readable.")
    train_features = {v: torch.cat(f) for v, f in features["train"].items()}
    val_features = {v: torch.cat(f) for v, f in features["val"].items()} if labels["val"] else {}
    val_labels = torch.cat(labels["val"]) if labels["val"] else torch.zeros(0, dtype=torch.long)
    weights = s.class_weights.cpu() if s.class_weights is not None else None
    fit = fit_probe(train_features, torch.cat(labels["train"]), val_features, val_labels, len(s.info.classes),
                    stage.view_sets, stage.l2_grid, weights)
    fit.install(s.model)
    s.state["probe"] = {"view_set": fit.view_set, "l2": fit.l2}
    views = {"fixed": "original images only (orientation matters here)",
             "mirror": "with mirrored copies (mirroring does not change the class)",
             "free": "with flipped and turned copies (orientation carries no meaning)"}[fit.view_set]
    choice = "chosen on validation" if len(val_labels) else "no validation images to choose with"
    yield Message("info", f"Linear probe: {views}, L2 penalty {fit.l2:g} ({choice}); validation loss "
                          f"{fit.val_loss:.3f}, accuracy {fit.val_accuracy:.1%}.")
    return fit.train_loss, fit.train_accuracy, fit.val_loss, fit.val_accuracy


def _eta(s: TrainingSession, this_epoch_left: float) -> float:
    """Seconds left in the run: what remains of this epoch, plus the plan's estimate of what follows it."""
    estimate = s.plan.estimated_seconds
    later = sum(v for k, v in estimate.items() if k in ("finetune", "baseline", "evaluation"))
    return max(0.0, this_epoch_left + later)


# -- fine-tuning --------------------------------------------------------------------------------------
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
        loss_fn = nn.CrossEntropyLoss(label_smoothing=stage.label_smoothing, weight=s.class_weights)
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
            for batch_no, batch in enumerate(_batches(s, loader), start=1):
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
        amp = dict(dtype=s.amp_dtype or torch.float32, enabled=s.amp_dtype is not None)
        head = s.model.get_classifier() if self.feature_mode else None
        logits_all, labels = [], []
        if self._features_ready("val"):
            items = sorted(self.features["val"])
            features = torch.stack([self.features["val"][i] for i in items]).to(s.device)
            with torch.autocast(s.device.type, **amp):
                logits_all.append(head(features).float())
            labels.append(torch.tensor([s.val_set.samples[i].label for i in items]))
        else:
            loaded: list[int] = []
            try:
                for images, batch_labels, batch_items, _ in s.loader("val", s.val_set, False):
                    if len(batch_labels) == 0:
                        continue
                    images = images.to(s.device)
                    if s.layout.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(s.device.type, **amp):
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
        probs = torch.softmax(torch.cat(logits_all).cpu(), 1)
        all_labels = torch.cat(labels)
        loss = float(s.eval_loss_fn(torch.log(probs.clamp_min(1e-12)).to(s.device), all_labels.to(s.device)))
        return loss, float((probs.argmax(1) == all_labels).float().mean())


class _FeatureSet(torch.utils.data.Dataset):
    """Cached backbone features of a split, item by item, shaped like ImageDataset items."""

    def __init__(self, features: dict[int, torch.Tensor], images: ImageDataset) -> None:
        self.features, self.images = features, images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item):
        item = item[0] if isinstance(item, tuple) else item
        feature = self.features.get(item)
        return None if feature is None else (feature, self.images.samples[item].label, item)


# -- after the epochs -----------------------------------------------------------------------------------
def baseline_check(s: TrainingSession, stage: BaselineStage):
    """Train the small from-scratch network on the split at low resolution; True when done (False: stopped)."""
    from desktop_tl.core.training.baseline import train_from_scratch

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
        for batch in _batches(s, make_loader(dataset, 64, False, 0, 0)):
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

