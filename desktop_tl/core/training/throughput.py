"""How fast this machine runs a model: the figures the automatic recipe plans its time budget with.

Evaluation forward passes and full fine-tuning steps are timed at two input sizes on a copy of the
model (the model, its BatchNorm statistics and the random state are untouched); other sizes are
interpolated (see `plan.Throughput`). The figures are remembered in the cache folder's tuning.json
per (model, sizes, device, threads, torch, processor), so only the first run of a model measures.
"""

from __future__ import annotations

import copy
import platform
import time

import torch
from torch import nn

from desktop_tl.core.models.precision import autocast
from desktop_tl.core.training.plan import Throughput
from desktop_tl.core.training.tuning import remember, remembered

FORWARD_BATCH, TRAIN_BATCH = 32, 16
TIMED_STEPS = 2            # after one warm-up step; the fastest counts (other programs only add time)


def measured_sizes(native: int) -> tuple[int, int]:
    """The two input sizes timed: the model's own and a small one."""
    return native, min(native, 96)


def _key(arch: str, sizes: tuple[int, int], device: torch.device, channels_last: bool) -> str:
    return "|".join(["throughput", f"torch {torch.__version__}", platform.machine(), platform.processor() or "cpu",
                     f"threads {torch.get_num_threads()}", device.type, arch, "x".join(map(str, sizes)),
                     "channels_last" if channels_last else "contiguous"])


def _fastest(step, repeats: int) -> float:
    step()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def _images_per_second(model: nn.Module, size: int, device: torch.device, channels_last: bool,
                       amp_dtype: torch.dtype | None) -> tuple[float, float]:
    """(evaluation forward images/s, full fine-tuning images/s) of `model` at `size`."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(FORWARD_BATCH, 3, size, size, generator=generator).to(device).contiguous(memory_format=fmt)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)

    def synchronise() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward() -> None:
        model.eval()
        with torch.no_grad(), autocast(device, amp_dtype):
            model(inputs)
        synchronise()

    def train_step() -> None:
        model.train()
        with autocast(device, amp_dtype):
            loss = model(inputs[:TRAIN_BATCH]).float().logsumexp(1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronise()

    forward_s = _fastest(forward, TIMED_STEPS)
    train_s = _fastest(train_step, TIMED_STEPS)
    return FORWARD_BATCH / forward_s, TRAIN_BATCH / train_s


def measure_throughput(model: nn.Module, arch: str, native: int, device: torch.device, channels_last: bool,
                       amp_dtype: torch.dtype | None = None) -> tuple[Throughput, bool]:
    """This machine's throughput for `model` (remembered after the first measurement); True when it was
    remembered rather than measured now."""
    sizes = measured_sizes(native)
    key = _key(arch, sizes, device, channels_last)
    known = remembered(key)
    if known is not None:
        try:
            return Throughput(device.type, tuple(map(tuple, known["forward"])), tuple(map(tuple, known["train"]))), True
        except (KeyError, TypeError, ValueError):
            pass   # damaged: measure again
    probe = copy.deepcopy(model).to(device)
    if channels_last:
        probe = probe.to(memory_format=torch.channels_last)
    for parameter in probe.parameters():
        parameter.requires_grad_(True)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        figures = {size: _images_per_second(probe, size, device, channels_last, amp_dtype) for size in sorted(set(sizes))}
    del probe
    forward = tuple((size, round(f, 2)) for size, (f, _) in figures.items())
    train = tuple((size, round(t, 2)) for size, (_, t) in figures.items())
    remember(key, {"forward": [list(p) for p in forward], "train": [list(p) for p in train]})
    return Throughput(device.type, forward, train), False
