"""The training loop: a generator of plain events that checks a stop flag every batch."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from desktop_tl.core import checkpoint, distributed
from desktop_tl.core.catalog import create_model, data_config
from desktop_tl.core.config import TrainConfig, to_dict
from desktop_tl.core.data import ImageDataset, default_num_workers, make_loader, split_dataset
from desktop_tl.core.decode_cache import DecodeCache
from desktop_tl.core.dataset import DatasetIndex
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluate import cautions
from desktop_tl.core.evaluation_run import evaluate_splits
from desktop_tl.core.events import (BatchProgress, CheckpointSaved, EpochEnd, Failed, Finished, Message,
                                    RunStarted, TrainEvent)
from desktop_tl.core.freeze import apply_freeze, freeze_batchnorm_stats, optimizer_param_groups
from desktop_tl.core.preprocess import Preprocessing
from desktop_tl.core.runs import METRICS_FILE, RunInfo, load_index, open_run, write_run_info
from desktop_tl.core.tuning import (AUTO_BATCH_START, COMPILE_PROBE_STEPS, LayoutChoice, automatic_batch_size,
                                    batch_limit, choose_layout, compile_pays_off)
from desktop_tl.core.atomic import atomic_write_json


@dataclass
class RunControl:
    """Stop and pause requests from another thread; the loop checks them every batch."""

    stop_event: threading.Event = field(default_factory=threading.Event)
    pause_event: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Ask the loop to stop at the next batch (the last saved epoch is kept)."""
        self.stop_event.set()

    def pause(self, paused: bool) -> None:
        """Pause or resume the loop between batches."""
        self.pause_event.set() if paused else self.pause_event.clear()

    @property
    def stop_requested(self) -> bool:
        """True once `stop` was called."""
        return self.stop_event.is_set()

    def wait_while_paused(self) -> None:
        """Block while paused, returning early on stop."""
        while self.pause_event.is_set() and not self.stop_event.is_set():
            time.sleep(0.05)


def pick_device(requested: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an unavailable explicit choice is a UserError."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA GPU is available.", "Use --device auto or cpu.")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps was asked for, but Apple's MPS is not available.", "Use --device auto or cpu.")
    return torch.device(requested)


def device_label(device: torch.device) -> str:
    """Human-readable device name, with the GPU model where there is one."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the base learning rate."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_seed(seed: int, epoch: int) -> int:
    """The RNG seed of one epoch: order and augmentation depend only on (seed, epoch)."""
    return seed * 100_003 + epoch


class _Trainer:
    """State of one run while it trains; `events()` drives it."""

    def __init__(self, info: RunInfo, index: DatasetIndex, control: RunControl) -> None:
        self.info, self.index, self.control = info, index, control
        cfg = info.config
        self.cfg = cfg
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.main = self.rank == 0
        self.device = pick_device(cfg.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed.local_rank())
        torch.manual_seed(cfg.seed)
        self.model, self.weights = create_model(cfg.model, cfg.weights, len(info.classes))
        self.trainable, self.total = apply_freeze(self.model, cfg.freeze)
        self.prep = Preprocessing.from_data_config(data_config(self.model), cfg.image_size)
        self.notes: list[Message] = []
        # what an interrupted run started with (layout, batch size): it continues with the same
        self.started_with = checkpoint.read_meta(info.run_dir / checkpoint.LAST) if info.has_checkpoint else {}
        # caches stay single-process: ranks would race on the same files and feature dictionaries
        self.cache = self._open_decode_cache() if cfg.decode_cache and self.world == 1 else None
        self.train_set = split_dataset(index, index.split("train"), self.prep, cfg.augment, self.cache)
        self.val_set = split_dataset(index, index.split("val"), self.prep, None, self.cache)
        if len(self.train_set) == 0:
            raise UserError("The training split is empty.", "Import a dataset with more images per class.")
        self.feature_mode = (cfg.feature_cache and self.world == 1 and cfg.freeze == "head" and cfg.augment == "none"
                             and _splits_cleanly(self.model, self.prep))
        self.features: dict[str, dict[int, torch.Tensor]] = {"train": {}, "val": {}}
        self.head = self.model.get_classifier() if self.feature_mode else None
        self._loaders: dict[str, torch.utils.data.DataLoader] = {}
        self._new_features: torch.Tensor | None = None
        self.model.to(self.device)
        self.amp_dtype = None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True   # fixed input size: let cuDNN pick the fastest kernels
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.layout = self._choose_layout()
        if self.layout.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.batch_size = self._choose_batch_size()
        self.micro_batch = self.batch_size   # halves on out-of-memory; the optimizer still sees batch_size
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.optimizer = torch.optim.AdamW(optimizer_param_groups(self.model, cfg.weight_decay, cfg.layer_decay),
                                           lr=cfg.lr)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, weight=self._class_weights())
        self.eval_loss_fn = nn.CrossEntropyLoss(weight=self.loss_fn.weight)
        self.forward_model: nn.Module = self.model   # torch.compile'd once it is known to pay (`--compile`)
        self._eager_step_seconds: list[float] | None = [] if cfg.compile else None
        self.state: dict[str, Any] = {"epoch": 0, "step": 0, "best_val_loss": math.inf, "best_epoch": 0,
                                      "bad_epochs": 0, "history": [], "skipped_images": 0}

    # -- setup -------------------------------------------------------------------------------------
    def _open_decode_cache(self) -> DecodeCache | None:
        """The decode cache of every image of the dataset at this geometry (None: decode every time)."""
        cache, why = DecodeCache.open([s.sha256 for s in self.index.samples], self.prep)
        if cache is None:
            self.notes.append(Message("info", f"Decoded-image cache is off for this run: {why}."))
        return cache

    def _choose_layout(self) -> LayoutChoice:
        """The memory layout of this run: the one it started with when resuming (so it continues exactly),
        else measured or remembered (see core.tuning); under torchrun every rank takes rank 0's."""
        recorded = self.started_with.get("memory_format")
        if recorded in ("channels_last", "contiguous"):
            return LayoutChoice(recorded)
        shared_cpu = self.world > 1 and self.device.type == "cpu"
        choice = LayoutChoice("contiguous")
        if self.main or not shared_cpu:
            choice = choose_layout(self.cfg.memory_format, self.device, self.model, self.cfg.model,
                                   self.prep.input_size, self.cfg.batch_size or AUTO_BATCH_START, self.cfg.freeze)
        if shared_cpu:   # one measurement (rank 0's) decides for all: ranks must compute alike
            flag = distributed.all_reduce_sum(torch.tensor([1.0 if choice.channels_last else 0.0]))
            choice = choice if self.main else LayoutChoice("channels_last" if flag.item() else "contiguous")
        note = choice.describe()
        if note:
            self.notes.append(Message("info", note))
        return choice

    def _choose_batch_size(self) -> int:
        """The configured batch size; for `auto` (0) the one the run started with when resuming, else the
        largest that fits on a GPU (searched; under torchrun the smallest over ranks, times the ranks),
        or 32 elsewhere, capped so that an epoch has several steps (see core.tuning)."""
        if self.cfg.batch_size:
            return self.cfg.batch_size
        if "batch_size" in self.started_with:
            return int(self.started_with["batch_size"])
        limit = batch_limit(len(self.train_set))
        if self.device.type != "cuda":
            batch = min(AUTO_BATCH_START, limit)
            why = (f"capped for {len(self.train_set)} training images, so that an epoch has several steps"
                   if limit < AUTO_BATCH_START
                   else f"on a {self.device.type.upper()} larger batches do not train faster")
            self.notes.append(Message("info", f"Automatic batch size: {batch} ({why})."))
            return batch
        search = automatic_batch_size(self.model, self.device, self.prep.input_size, max(1, limit // self.world),
                                      self.layout.channels_last, self.amp_dtype)
        per_rank = int(distributed.all_reduce_min(torch.tensor([search.batch_size], device=self.device)))
        self.notes.append(Message("info", search.describe(device_label(self.device))
                                  + (f" Under torchrun: {per_rank} per process x {self.world}." if self.world > 1
                                     else "")))
        return per_rank * self.world

    def _loader(self, name: str) -> torch.utils.data.DataLoader:
        """One loader per purpose for the whole run (workers persist between epochs)."""
        if name not in self._loaders:
            workers = default_num_workers() if self.cfg.num_workers < 0 else self.cfg.num_workers
            pin = self.device.type == "cuda"
            if name == "train":
                loader = make_loader(self.train_set, self.batch_size, True, 0, workers, pin, persistent=True,
                                     rank=self.rank, world=self.world)
            elif name == "val":
                loader = make_loader(self.val_set, max(self.batch_size, 32), False, 0, workers, pin, persistent=True)
            else:  # cached features: in memory, no worker processes needed
                loader = make_loader(_FeatureSet(self.features["train"], self.train_set), self.batch_size, True,
                                     0, 0, pin)
            self._loaders[name] = loader
        return self._loaders[name]

    def _features_ready(self, split: str) -> bool:
        dataset = self.train_set if split == "train" else self.val_set
        return self.feature_mode and len(self.features[split]) == len(dataset)

    def _pre_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features: what the classifier sees."""
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)

    def _class_weights(self) -> torch.Tensor | None:
        if not self.cfg.class_weighted:
            return None
        counts = np.bincount([s.label for s in self.train_set.samples], minlength=len(self.info.classes))
        weights = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(weights, dtype=torch.float32, device=self.device)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_set) / self.batch_size)

    def meta(self) -> dict[str, Any]:
        """Checkpoint metadata: everything but tensors, JSON only."""
        return dict(self.state, best_val_loss=_finite_or_none(self.state["best_val_loss"]),
                    config=to_dict(self.cfg), classes=self.info.classes, arch=self.cfg.model,
                    preprocessing=self.prep.to_dict(), weights=to_dict(self.weights),
                    batch_size=self.batch_size, micro_batch=self.micro_batch, scaler=self.scaler.state_dict(),
                    memory_format=self.layout.memory_format)

    def resume(self) -> None:
        """Load `last.safetensors` (weights, optimizer, counters) to continue exactly."""
        ckpt = checkpoint.load_checkpoint(self.info.run_dir / checkpoint.LAST)
        self.model.load_state_dict(ckpt.model)
        if ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        meta = ckpt.meta
        self.state = {k: meta[k] for k in self.state}
        if self.state["best_val_loss"] is None:
            self.state["best_val_loss"] = math.inf
        self.batch_size = int(meta.get("batch_size", self.batch_size))
        self.micro_batch = int(meta.get("micro_batch", self.batch_size))
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])

    # -- loop --------------------------------------------------------------------------------------
    def events(self) -> Iterator[TrainEvent]:
        cfg = self.cfg
        start_epoch = self.state["epoch"] + 1
        yield RunStarted(cfg.epochs, start_epoch, len(self.train_set), len(self.val_set),
                         device_label(self.device), self.trainable, self.total, self.batch_size)
        for message in self.index.warnings:
            yield Message("warning", message)
        yield from self.notes
        try:
            yield from self._epochs(cfg, start_epoch)
        finally:
            self._loaders.clear()   # ends persistent loader workers

    def _epochs(self, cfg: TrainConfig, start_epoch: int) -> Iterator[TrainEvent]:
        if len(self.val_set) == 0:
            yield Message("warning", "No validation images: the best checkpoint is simply the latest one.")
        self.info.status = "running"
        if self.main:
            write_run_info(self.info)
        run_started = time.perf_counter()
        images_done = 0
        for epoch in range(start_epoch, cfg.epochs + 1):
            epoch_started = time.perf_counter()
            outcome = yield from self._train_epoch(epoch, run_started, images_done)
            if outcome is None:
                yield self._finished(completed=False, stopped_by_user=True)
                return
            train_loss, train_acc, seen = outcome
            images_done += seen
            val_loss, val_acc = self._validate()
            is_best = val_loss < self.state["best_val_loss"] or len(self.val_set) == 0
            if is_best:
                self.state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
            else:
                self.state["bad_epochs"] += 1
            lr = self.optimizer.param_groups[-1]["lr"]
            self.state["history"].append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                                          "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr})
            self.state["epoch"] = epoch
            yield EpochEnd(epoch, cfg.epochs, train_loss, train_acc, val_loss, val_acc, lr,
                           time.perf_counter() - epoch_started, is_best)
            # best first: last.safetensors is the commit point of resume, and it names the best epoch
            if self.main:   # under torchrun only rank 0 writes; the others wait until the files are there
                if is_best:
                    checkpoint.save_checkpoint(self.info.run_dir / checkpoint.BEST, self.model, self.meta())
                checkpoint.save_checkpoint(self.info.run_dir / checkpoint.LAST, self.model, self.meta(),
                                           self.optimizer)
            distributed.barrier()
            yield CheckpointSaved(epoch, checkpoint.LAST, False)
            if is_best:
                yield CheckpointSaved(epoch, checkpoint.BEST, True)
            if cfg.early_stopping_patience and self.state["bad_epochs"] >= cfg.early_stopping_patience:
                yield Message("info", f"Early stopping: validation loss has not improved for "
                                      f"{self.state['bad_epochs']} epochs.")
                break
        yield from self._complete()

    def _train_epoch(self, epoch: int, run_started: float, images_before: int):
        cfg = self.cfg
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        if self.feature_mode:
            mode = "head" if self._features_ready("train") else "extract"
        else:
            mode = "model"
        loader = self._loader("features" if mode == "head" else "train")
        loader.batch_sampler.set_seed(epoch_seed(cfg.seed, epoch))
        self.model.train()
        freeze_batchnorm_stats(self.model)
        total_loss, correct, seen = 0.0, 0, 0
        loaded: list[int] = []
        batches = len(loader)
        total_steps = cfg.epochs * self.steps_per_epoch
        warmup = min(int(cfg.warmup_epochs * self.steps_per_epoch), total_steps // 2)
        try:
            for batch_no, (images, labels, items, skipped) in enumerate(loader, start=1):
                self.control.wait_while_paused()
                if self.control.stop_requested:
                    return None
                batch_started = time.perf_counter()
                if skipped:
                    self.state["skipped_images"] += skipped
                    yield Message("warning", f"{skipped} image(s) could not be read any more and were skipped "
                                             f"(moved, deleted or damaged since import).")
                factor = lr_factor(self.state["step"], total_steps, warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * factor * group.get("lr_scale", 1.0)
                self.state["step"] += 1
                if len(labels) == 0 and self.world == 1:
                    continue
                loaded.extend(items.tolist())
                loss, batch_correct = yield from self._step_with_oom_recovery(images, labels, mode)
                if self._eager_step_seconds is not None and mode == "model":
                    yield from self._consider_compiling(time.perf_counter() - batch_started, total_steps)
                if mode == "extract":
                    self.features["train"].update(zip(items.tolist(), self._new_features))
                # sums over ranks: every figure is the one of the global batch
                figures = distributed.all_reduce_sum(torch.tensor([loss * len(labels), float(batch_correct),
                                                                   float(len(labels))], dtype=torch.float64))
                if figures[2] == 0:
                    continue
                total_loss += float(figures[0])
                correct += int(figures[1])
                seen += int(figures[2])
                batch_images = int(figures[2])
                elapsed = time.perf_counter() - run_started
                done = images_before + seen
                remaining = (cfg.epochs - epoch) * len(self.train_set) + (len(self.train_set) - seen)
                yield BatchProgress(epoch, cfg.epochs, batch_no, batches, total_loss / seen, correct / seen,
                                    self.optimizer.param_groups[-1]["lr"],
                                    batch_images / max(time.perf_counter() - batch_started, 1e-9),
                                    remaining * elapsed / max(done, 1))
        finally:
            if mode != "head":
                self.train_set.commit_cache(loaded)   # decoded images become valid for later epochs and runs
        if seen == 0:
            raise UserError("No training image could be read in this epoch.",
                            "Check that the dataset folder is still there and readable.")
        return total_loss / seen, correct / seen, seen

    def _consider_compiling(self, step_seconds: float, total_steps: int) -> Iterator[TrainEvent]:
        """With `--compile`: after a few timed eager steps, compile the model if that pays for itself
        within the rest of the run (see core.tuning.compile_pays_off); say what was decided and why."""
        self._eager_step_seconds.append(step_seconds)
        if len(self._eager_step_seconds) < COMPILE_PROBE_STEPS:
            return
        worth, figures = compile_pays_off(self._eager_step_seconds, total_steps - self.state["step"])
        self._eager_step_seconds = None
        # every rank compiles or none does, so that all compute alike
        worth = bool(distributed.all_reduce_min(torch.tensor([int(worth)], device=self.device)).item())
        if worth:
            self.forward_model = torch.compile(self.model)
            yield Message("info", f"torch.compile: compiling the model now ({figures}).")
        else:
            yield Message("info", f"torch.compile skipped: it would not pay for itself in this run ({figures}).")

    def _step_with_oom_recovery(self, images: torch.Tensor, labels: torch.Tensor, mode: str = "model"):
        """One optimizer step; on out-of-memory the micro-batch halves and the step is retried.

        The batch is then processed in chunks with accumulated gradients, so the schedule, the
        learning rate and resume stay exactly as planned. Below one image it is a UserError.
        Under torchrun the ranks agree on the global batch size once, before any retry: a rank that
        runs out of memory retries on its own without another collective call, so none waits forever.
        """
        # each rank holds a slice of the global batch: its share of the mean loss is
        # len(slice) / len(global batch), and the gradients are summed over ranks before the step
        global_count = len(labels)
        if self.world > 1:
            global_count = int(distributed.all_reduce_sum(torch.tensor([len(labels)], device=self.device)))
            if global_count == 0:
                return 0.0, 0
        while True:
            try:
                return self._step(images, labels, global_count, mode)
            except torch.OutOfMemoryError:
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.micro_batch <= 1:
                    raise UserError("Out of memory even with one image at a time.",
                                    "Lower --image-size, pick a smaller model, or use --device cpu.") from None
                self.micro_batch = max(1, min(self.micro_batch, len(labels)) // 2)
                yield Message("warning", f"Out of memory: now processing {self.micro_batch} image(s) at a time "
                                         f"(gradients accumulated to the batch size {self.batch_size}).")

    def _step(self, inputs: torch.Tensor, labels: torch.Tensor, global_count: int,
              mode: str = "model") -> tuple[float, int]:
        """One optimizer step on this rank's `labels` out of `global_count` images of the global batch.
        `mode`: "model" (images through the model), "extract" (images through the frozen backbone without
        gradients, features kept in `_new_features`, then the classifier) or "head" (cached features
        through the classifier)."""
        inputs = inputs.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.layout.channels_last and mode != "head":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        total_loss, correct = 0.0, 0
        new_features = []
        chunks = zip(inputs.split(self.micro_batch), labels.split(self.micro_batch)) if len(labels) else ()
        for chunk, chunk_labels in chunks:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                if mode == "model":
                    logits = self.forward_model(chunk)
                else:
                    if mode == "extract":
                        with torch.no_grad():
                            chunk = self._pre_logits(chunk).float()
                        new_features.append(chunk.cpu())
                    logits = self.head(chunk)
                loss = self.loss_fn(logits.float(), chunk_labels)
            self.scaler.scale(loss * (len(chunk_labels) / global_count)).backward()
            total_loss += float(loss.detach()) * len(chunk_labels) / max(len(labels), 1)
            correct += int((logits.argmax(1) == chunk_labels).sum())
        if self.world > 1:
            self._all_reduce_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._new_features = torch.cat(new_features) if new_features else None
        return total_loss, correct

    def _all_reduce_gradients(self) -> None:
        """Sum the gradients of the trainable parameters over ranks (a rank with an empty slice adds zeros)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = distributed.all_reduce_sum(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        if len(self.val_set) == 0:
            return math.nan, math.nan
        self.model.eval()
        amp = dict(dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)
        probs, labels = [], []
        if self._features_ready("val"):
            items = sorted(self.features["val"])
            features = torch.stack([self.features["val"][i] for i in items]).to(self.device)
            with torch.autocast(self.device.type, **amp):
                probs.append(torch.softmax(self.head(features).float(), 1).cpu())
            labels.append(torch.tensor([self.val_set.samples[i].label for i in items]))
        else:
            loaded: list[int] = []
            try:
                for images, batch_labels, batch_items, _ in self._loader("val"):
                    if len(batch_labels) == 0:
                        continue
                    images = images.to(self.device)
                    if self.layout.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(self.device.type, **amp):
                        if self.feature_mode:
                            features = self._pre_logits(images).float()
                            self.features["val"].update(zip(batch_items.tolist(), features.cpu()))
                            logits = self.head(features)
                        else:
                            logits = self.model(images)
                    probs.append(torch.softmax(logits.float(), 1).cpu())
                    labels.append(batch_labels)
                    loaded.extend(batch_items.tolist())
            finally:
                self.val_set.commit_cache(loaded)
        if not labels:
            return math.nan, math.nan
        all_probs, all_labels = torch.cat(probs), torch.cat(labels)
        loss = float(self.eval_loss_fn(torch.log(all_probs.clamp_min(1e-12)).to(self.device),
                                       all_labels.to(self.device)))
        return loss, float((all_probs.argmax(1) == all_labels).float().mean())

    def _complete(self) -> Iterator[TrainEvent]:
        if not self.main:   # rank 0 evaluates the test split alone; the others wait for it
            distributed.barrier()
            self.info.status = "finished"
            yield self._finished(completed=True, stopped_by_user=False)
            return
        best = checkpoint.load_checkpoint(self.info.run_dir / checkpoint.BEST)
        self.model.load_state_dict(best.model)
        metrics = {"classes": self.info.classes, "checkpoint": "best", "best_epoch": self.state["best_epoch"]}
        metrics.update(evaluate_splits(self.model, self.index, self.prep, self.info.classes, self.device,
                                       max(self.batch_size, 32), self.cfg.num_workers, self.amp_dtype))
        counts = self.index.counts()
        metrics["history"] = self.state["history"]
        metrics["cautions"] = cautions(self.state["history"], {c: counts[c]["train"] for c in self.info.classes},
                                       metrics["test"])
        metrics["skipped_during_training"] = self.state["skipped_images"]
        atomic_write_json(self.info.run_dir / METRICS_FILE, _json_safe(metrics))
        self.info.status = "finished"
        write_run_info(self.info)
        distributed.barrier()
        yield self._finished(completed=True, stopped_by_user=False, metrics=metrics)

    def _finished(self, completed: bool, stopped_by_user: bool, metrics: dict | None = None) -> Finished:
        return Finished(self.state["epoch"], self.cfg.epochs, completed, stopped_by_user, self.state["best_epoch"],
                        self.state["best_val_loss"], metrics)


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


def _splits_cleanly(model: nn.Module, prep: Preprocessing) -> bool:
    """True when the model is exactly classifier(forward_head(forward_features(x), pre_logits=True))
    with nothing random in between, so features of the frozen backbone can be computed once."""
    if not all(hasattr(model, a) for a in ("forward_features", "forward_head", "get_classifier")):
        return False
    if float(getattr(model, "drop_rate", 0.0) or 0.0) > 0:
        return False
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return False
        if float(getattr(module, "drop_prob", 0.0) or 0.0) > 0:
            return False
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.randn(2, 3, *prep.input_size, generator=torch.Generator().manual_seed(0))
            whole = model(x)
            split = model.get_classifier()(model.forward_head(model.forward_features(x), pre_logits=True))
            return whole.shape == split.shape and torch.allclose(whole, split, atol=1e-5, rtol=1e-4)
    except Exception:  # an architecture that does not follow timm's forward_head convention
        return False
    finally:
        model.train(was_training)


def train_run(run_dir: Path, control: RunControl | None = None, data_root: Path | None = None
              ) -> Iterator[TrainEvent]:
    """Train (or resume) the run in `run_dir`, yielding events; a finished run yields Finished at once.

    User-facing problems end the stream with a Failed event instead of raising.
    """
    control = control or RunControl()
    try:
        info = open_run(run_dir)
        if info.finished:
            meta = checkpoint.read_meta(Path(run_dir) / checkpoint.LAST)
            yield Finished(meta["epoch"], info.config.epochs, True, False, meta["best_epoch"],
                           meta["best_val_loss"], None)
            return
        index = load_index(run_dir, data_root)
        trainer = _Trainer(info, index, control)
        if info.has_checkpoint:
            trainer.resume()
        distributed.broadcast_module(trainer.model)   # every rank starts from rank 0's weights
        yield from trainer.events()
    except UserError as exc:
        yield Failed(exc.what, exc.hint)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_safe(obj: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) with None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
