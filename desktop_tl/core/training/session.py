"""The resources of one run while it trains: device, model, data, caches, layout, batch size and state."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from desktop_tl.core.config import to_dict
from desktop_tl.core.control import RunControl
from desktop_tl.core.data.decode_cache import DecodeCache
from desktop_tl.core.data.folds import assign_folds
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.data.loaders import ImageDataset, default_num_workers, make_loader, split_dataset
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.data.transforms import CropFlip
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Finished, Message
from desktop_tl.core.models.delivered import ENSEMBLE_ARCH, SCRATCH_ARCH
from desktop_tl.core.models.ensemble import Ensemble, ensemble_meta
from desktop_tl.core.models.factory import LoadedWeights, create_model
from desktop_tl.core.models.freeze import apply_freeze
from desktop_tl.core.models.rebuild import architecture_for
from desktop_tl.core.models.scratch import ScratchNet
from desktop_tl.core.models.structure import data_config
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import MEMBER_CHECKPOINT, RunInfo
from desktop_tl.core.training import distributed
from desktop_tl.core.training.devices import amp_dtype_for, device_label, pick_device
from desktop_tl.core.training.plan import FineTuneStage, Plan
from desktop_tl.core.training.tuning import (
    AUTO_BATCH_START,
    LayoutChoice,
    automatic_batch_size,
    batch_limit,
    choose_layout,
)

RARE_SHARE, MAX_POSITIVE_WEIGHT = 0.2, 5.0    # multi-label: when a label's images weigh more, and at most how much


class TrainingSession:
    """Everything one run trains with; `core.training.loop` drives it through the plan's stages."""

    def __init__(self, info: RunInfo, index: DatasetIndex, control: RunControl, plan: Plan,
                 built: tuple[nn.Module, LoadedWeights] | None = None) -> None:
        self.info, self.index, self.control, self.plan = info, index, control, plan
        cfg = self.cfg = info.config
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.main = self.rank == 0
        self.device = pick_device(cfg.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed.local_rank())
        torch.manual_seed(cfg.seed)
        self.model, self.weights = built or create_model(cfg.model, cfg.weights, len(info.classes),
                                                         info.kept_weights)
        self.arch = cfg.model      # the architecture of `model`: the configured one, or SCRATCH_ARCH once adopted
        self.finetune = plan.stage("finetune")
        self.trainable, self.total = apply_freeze(self.model, self.finetune.freeze if self.finetune else "head")
        self.prep = Preprocessing.from_data_config(data_config(self.model), plan.image_size, plan.crop_pct)
        self.notes: list[Message] = []
        # what an interrupted run started with (layout, batch size): it continues with the same
        self.started_with = checkpoint.read_meta(info.run_dir / checkpoint.LAST) if info.has_checkpoint else {}
        # caches stay single-process: ranks would race on the same files and feature dictionaries
        self.cache = self._open_decode_cache() if cfg.decode_cache and self.world == 1 else None
        self.train_samples = index.split("train")
        if not self.train_samples:
            raise UserError("The training split is empty.", "Import a dataset with more images per class.")
        self.val_set = split_dataset(index, index.split("val"), self.prep, None, self.cache)
        self._train_sets: dict[Any, ImageDataset] = {}
        self.model.to(self.device)
        self.amp_dtype = amp_dtype_for(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True   # fixed input size: let cuDNN pick the fastest kernels
        self.layout = self._choose_layout()
        if self.layout.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.batch_size = self._choose_batch_size()
        self.micro_batch = self.batch_size   # halves on out-of-memory; the optimizer still sees batch_size
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.class_weights = self._class_weights()
        self.positive_weights = self._positive_weights()
        self.eval_loss_fn = (nn.BCEWithLogitsLoss() if plan.multi_label else
                             nn.CrossEntropyLoss(weight=self.class_weights))
        self.loaders: dict[str, torch.utils.data.DataLoader] = {}
        self.state: dict[str, Any] = {"epoch": 0, "step": 0, "best_val_loss": math.inf, "best_epoch": 0,
                                      "bad_epochs": 0, "history": [], "skipped_images": 0, "seconds": 0.0,
                                      "ended_early": None, "probe": None, "transfer_check": None,
                                      "cross_validation": None,
                                      "members": None,     # the anytime rounds of core.training.members
                                      "ensemble": None}    # "pending": the small network joins at the end

    # -- setup -------------------------------------------------------------------------------------
    def _open_decode_cache(self) -> DecodeCache | None:
        """The decode cache of every image of the dataset at this geometry (None: decode every time)."""
        cache, why = DecodeCache.open([s.sha256 for s in self.index.samples], self.prep)
        if cache is None:
            self.notes.append(Message("info", f"Decoded-image cache is off for this run: {why}."))
        return cache

    def _choose_layout(self) -> LayoutChoice:
        """The memory layout of this run: the one it started with when resuming (so it continues exactly),
        else measured or remembered (see core.training.tuning); under torchrun every rank takes rank 0's."""
        recorded = self.started_with.get("memory_format")
        if recorded in ("channels_last", "contiguous"):
            return LayoutChoice(recorded)
        shared_cpu = self.world > 1 and self.device.type == "cpu"
        choice = LayoutChoice("contiguous")
        if self.main or not shared_cpu:
            freeze = self.finetune.freeze if self.finetune else "head"
            choice = choose_layout(self.cfg.memory_format, self.device, self.model, self.cfg.model,
                                   self.prep.input_size, self.plan.batch_size or AUTO_BATCH_START, freeze)
        if shared_cpu:   # one measurement (rank 0's) decides for all: ranks must compute alike
            flag = distributed.all_reduce_sum(torch.tensor([1.0 if choice.channels_last else 0.0]))
            choice = choice if self.main else LayoutChoice("channels_last" if flag.item() else "contiguous")
        note = choice.describe()
        if note:
            self.notes.append(Message("info", note))
        return choice

    def _choose_batch_size(self) -> int:
        """The plan's batch size; for automatic (0) the one the run started with when resuming, else the
        largest that fits on a GPU (searched; under torchrun the smallest over ranks, times the ranks),
        or 32 elsewhere, capped so that an epoch has several steps (see core.training.tuning)."""
        if self.plan.batch_size:
            return self.plan.batch_size
        if "batch_size" in self.started_with:
            return int(self.started_with["batch_size"])
        n_train = len(self.train_samples)
        limit = batch_limit(n_train)
        if self.device.type != "cuda":
            batch = min(AUTO_BATCH_START, limit)
            why = (f"capped for {n_train} training images, so that an epoch has several steps"
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

    def _class_weights(self) -> torch.Tensor | None:
        if not self.plan.class_weighted:
            return None
        counts = np.bincount([s.label for s in self.train_samples], minlength=len(self.info.classes))
        weights = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(weights, dtype=torch.float32, device=self.device)

    def _positive_weights(self) -> torch.Tensor | None:
        """Multi-label: each label's images weigh more in the loss when the label is rare (under RARE_SHARE of
        the training images), by the square root of its negatives over its positives, at most MAX_POSITIVE_WEIGHT;
        None for a single-label run or when no label is rare."""
        if not self.plan.multi_label:
            return None
        positives = np.zeros(len(self.info.classes))
        for sample in self.train_samples:
            positives[list(sample.labels)] += 1
        images = len(self.train_samples)
        rare = positives < RARE_SHARE * images
        if not rare.any():
            return None
        weights = np.where(rare, np.sqrt((images - positives) / np.maximum(positives, 1)), 1.0)
        return torch.tensor(np.clip(weights, 1.0, MAX_POSITIVE_WEIGHT), dtype=torch.float32, device=self.device)

    # -- data --------------------------------------------------------------------------------------
    def fold_of(self) -> dict[str, int]:
        """The cross-validation fold of every training and validation image, by path (the same every time:
        a function of the samples, the plan's folds and the seed)."""
        pooled = self.index.split("train") + self.index.split("val")
        folds = assign_folds(pooled, self.plan.cross_validation, self.cfg.seed, self.index.near_duplicates)
        return {sample.path: fold for sample, fold in zip(pooled, folds, strict=True)}

    def train_set(self, augment: str | CropFlip | None) -> ImageDataset:
        """The training split with this augmentation (None: the evaluation transform), made once."""
        if augment not in self._train_sets:
            self._train_sets[augment] = split_dataset(self.index, self.train_samples, self.prep, augment, self.cache)
        return self._train_sets[augment]

    def augmentation(self, stage: FineTuneStage) -> str | CropFlip:
        """The training augmentation of a fine-tuning stage (the recipe's own resolves the probe's flips)."""
        if stage.augment != "auto":
            return stage.augment
        flips = stage.flips
        if flips == "probe":
            flips = (self.state.get("probe") or {}).get("view_set", "fixed")
        return CropFlip((stage.crop_min, 1.0), flips, stage.colour_jitter)

    def workers(self) -> int:
        """Image loader processes: the setting, or this machine's default when it is automatic (-1)."""
        return default_num_workers() if self.cfg.num_workers < 0 else self.cfg.num_workers

    def loader(self, name: str, dataset: torch.utils.data.Dataset, shuffle: bool,
               workers: int | None = None) -> torch.utils.data.DataLoader:
        """One loader per purpose for the whole run (workers persist between epochs)."""
        if name not in self.loaders:
            if workers is None:
                workers = self.workers()
            batch = self.batch_size if shuffle else max(self.batch_size, 32)
            self.loaders[name] = make_loader(dataset, batch, shuffle, 0, workers, self.device.type == "cuda",
                                             persistent=workers > 0, rank=self.rank if shuffle else 0,
                                             world=self.world if shuffle else 1)
        return self.loaders[name]

    def close(self) -> None:
        """End the loaders' worker processes."""
        self.loaders.clear()

    def batches(self, loader):
        """Batches of `loader`, honouring pause and stop; yields None (and ends) when a stop was asked for."""
        for batch in loader:
            self.control.wait_while_paused()
            if self.control.stop_requested:
                yield None
                return
            yield batch

    def adopt(self, model: nn.Module, arch: str = SCRATCH_ARCH) -> None:
        """Make another model the run's: the small network trained from scratch (pretraining did not help), or
        an ensemble (ENSEMBLE_ARCH) of the pretrained model and that network."""
        self.model, self.arch = model.to(self.device), arch

    def describe(self, model: nn.Module) -> dict[str, Any]:
        """What a checkpoint records to rebuild `model`'s architecture (core.models.rebuild)."""
        if isinstance(model, ScratchNet):
            return {"arch": SCRATCH_ARCH, "scratch_size": model.size}
        if isinstance(model, Ensemble):
            return {"arch": ENSEMBLE_ARCH,
                    **ensemble_meta([self.describe(m) for m in model.members], model.views)}
        return {"arch": self.cfg.model}

    def keep_member(self, model: ScratchNet) -> None:
        """Keep the small network that joins the fine-tuned model in an ensemble at the end of the run, in the
        run folder (a resumed run finds it there)."""
        checkpoint.save_checkpoint(self.info.run_dir / MEMBER_CHECKPOINT, model,
                                   {**self.describe(model), "classes": self.info.classes})

    def join_member(self, views: tuple[str, ...]) -> None:
        """The run's model becomes the ensemble of itself (the best fine-tuned model) and the kept small network,
        averaged over `views`."""
        kept = checkpoint.load_checkpoint(self.info.run_dir / MEMBER_CHECKPOINT)
        member = architecture_for(kept.meta, len(self.info.classes))
        member.load_state_dict(kept.model)
        self.adopt(Ensemble([self.model, member.eval()], views), ENSEMBLE_ARCH)

    # -- checkpoints -------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """Checkpoint metadata: everything but tensors, JSON only."""
        best = self.state["best_val_loss"]
        return dict(self.state, best_val_loss=best if math.isfinite(best) else None, **self.describe(self.model),
                    config=to_dict(self.cfg), classes=self.info.classes,
                    preprocessing=self.prep.to_dict(), weights=to_dict(self.weights),
                    batch_size=self.batch_size, micro_batch=self.micro_batch, scaler=self.scaler.state_dict(),
                    memory_format=self.layout.memory_format)

    def restore(self) -> dict[str, Any] | None:
        """Load `last.safetensors` (weights, counters) to continue exactly; returns its optimizer state."""
        ckpt = checkpoint.load_checkpoint(self.info.run_dir / checkpoint.LAST)
        meta = ckpt.meta
        if meta.get("arch") in (SCRATCH_ARCH, ENSEMBLE_ARCH):
            self.adopt(architecture_for(meta, len(self.info.classes)), meta["arch"])
        self.model.load_state_dict(ckpt.model)
        for key in self.state:
            if key in meta:
                self.state[key] = meta[key]
        if self.state["best_val_loss"] is None:
            self.state["best_val_loss"] = math.inf
        self.batch_size = int(meta.get("batch_size", self.batch_size))
        self.micro_batch = int(meta.get("micro_batch", self.batch_size))
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        return ckpt.optimizer

    def finished(self, completed: bool, stopped_by_user: bool, metrics: dict | None = None) -> Finished:
        """The Finished event of this run as it stands."""
        return Finished(self.state["epoch"], self.plan.total_epochs, completed, stopped_by_user,
                        self.state["best_epoch"], self.state["best_val_loss"], metrics)

    def save(self, is_best: bool, optimizer: torch.optim.Optimizer | None) -> None:
        """Best first: last.safetensors is the commit point of resume, and it names the best epoch."""
        if is_best:
            checkpoint.save_checkpoint(self.info.run_dir / checkpoint.BEST, self.model, self.meta())
        checkpoint.save_checkpoint(self.info.run_dir / checkpoint.LAST, self.model, self.meta(), optimizer)
