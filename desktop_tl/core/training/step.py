"""One optimizer step: micro-batches with accumulated gradients, out-of-memory recovery, gradients summed
over torchrun ranks, and the decision whether `torch.compile` pays for itself."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Message, TrainEvent
from desktop_tl.core.models.precision import autocast
from desktop_tl.core.training import distributed
from desktop_tl.core.training.tuning import COMPILE_PROBE_STEPS, compile_pays_off


def count_correct(logits: torch.Tensor, targets: torch.Tensor) -> int:
    """Images predicted right: the most probable class, or with several labels per image (0/1 targets) the exact
    set of labels whose sigmoid passes 0.5."""
    if targets.ndim == 2:
        return int(((logits > 0) == (targets > 0.5)).all(1).sum())
    return int((logits.argmax(1) == targets).sum())

class Stepper:
    """The optimizer step of a run: model, classifier, optimizer, loss and the micro-batch size.

    `mode` of a step: "model" (images through the model), "extract" (images through the frozen backbone
    without gradients, the features kept in `new_features`, then the classifier) or "head" (cached
    features through the classifier).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                 device: torch.device, batch_size: int, micro_batch: int, channels_last: bool,
                 amp_dtype: torch.dtype | None, scaler: torch.amp.GradScaler, world: int = 1,
                 compile_requested: bool = False) -> None:
        self.model, self.optimizer, self.loss_fn, self.device = model, optimizer, loss_fn, device
        self.batch_size, self.micro_batch = batch_size, micro_batch
        self.channels_last, self.amp_dtype, self.scaler, self.world = channels_last, amp_dtype, scaler, world
        self.forward_model: nn.Module = model        # torch.compile'd once it is known to pay (`--compile`)
        self.head = model.get_classifier() if hasattr(model, "get_classifier") else None
        self.new_features: torch.Tensor | None = None
        self._eager_step_seconds: list[float] | None = [] if compile_requested else None

    def step(self, images: torch.Tensor, labels: torch.Tensor, mode: str = "model"
             ) -> Iterator[TrainEvent]:
        """One optimizer step on this rank's `labels`; on out-of-memory the micro-batch halves and the step
        is retried (a Message says so). Returns (mean loss, correct predictions) as the generator's value.

        The batch is then processed in chunks with accumulated gradients, so the schedule, the learning
        rate and resume stay exactly as planned. Below one image it is a UserError. Under torchrun the
        ranks agree on the global batch size once, before any retry: a rank that runs out of memory
        retries on its own without another collective call, so none waits forever.
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
                                    "Lower the image size, pick a smaller model, or train on the CPU.") from None
                self.micro_batch = max(1, min(self.micro_batch, len(labels)) // 2)
                yield Message("warning", f"Out of memory: now processing {self.micro_batch} image(s) at a time "
                                         f"(gradients accumulated to the batch size {self.batch_size}).")

    def _step(self, inputs: torch.Tensor, labels: torch.Tensor, global_count: int,
              mode: str = "model") -> tuple[float, int]:
        inputs = inputs.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.channels_last and mode != "head":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        total_loss, correct = 0.0, 0
        new_features = []
        chunks = zip(inputs.split(self.micro_batch), labels.split(self.micro_batch)) if len(labels) else ()
        for chunk, chunk_labels in chunks:
            with autocast(self.device, self.amp_dtype):
                if mode == "model":
                    logits = self.forward_model(chunk)
                else:
                    if mode == "extract":
                        with torch.no_grad():
                            chunk = self.model.forward_head(self.model.forward_features(chunk), pre_logits=True).float()
                        new_features.append(chunk.cpu())
                    logits = self.head(chunk)
                loss = self.loss_fn(logits.float(), chunk_labels)
            self.scaler.scale(loss * (len(chunk_labels) / global_count)).backward()
            total_loss += float(loss.detach()) * len(chunk_labels) / max(len(labels), 1)
            correct += count_correct(logits, chunk_labels)
        if self.world > 1:
            self._all_reduce_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.new_features = torch.cat(new_features) if new_features else None
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

    def consider_compiling(self, step_seconds: float, remaining_steps: int) -> Iterator[TrainEvent]:
        """With `--compile`: after a few timed eager steps, compile the model if that pays for itself
        within the rest of the run (see core.training.tuning.compile_pays_off); say what was decided and why."""
        if self._eager_step_seconds is None:
            return
        self._eager_step_seconds.append(step_seconds)
        if len(self._eager_step_seconds) < COMPILE_PROBE_STEPS:
            return
        worth, figures = compile_pays_off(self._eager_step_seconds, remaining_steps)
        self._eager_step_seconds = None
        # every rank compiles or none does, so that all compute alike
        worth = bool(distributed.all_reduce_min(torch.tensor([int(worth)], device=self.device)).item())
        if worth:
            self.forward_model = torch.compile(self.model)
            yield Message("info", f"torch.compile: compiling the model now ({figures}).")
        else:
            yield Message("info", f"torch.compile skipped: it would not pay for itself in this run ({figures}).")
