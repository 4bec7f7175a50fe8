"""Measured, remembered choices of how to run a model fastest on this machine.

On a CPU, the channels-last memory layout makes most convolutional networks 1.2-1.6x faster to
train, but some (ResNet-18 at small sizes, ConvNeXt at 224 px) get slower. Like cuDNN's benchmark
mode, the layout is therefore measured rather than guessed: the first run of a model at an input
size, batch and freeze setting times a few training steps in both layouts on a copy of the model
and keeps the faster one. The answer is remembered in `user_cache_dir()/tuning.json`, so later runs
on this machine start at once. GPUs always use channels-last (tensor cores want it).
"""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from desktop_tl.core.atomic import atomic_write_json
from desktop_tl.core.errors import UserError
from desktop_tl.core.paths import user_cache_dir
TUNING_FILE = "tuning.json"
PROBE_STEPS = 6          # per layout: the first is a warm-up, the fastest of the others counts
MIN_GAIN = 1.05          # channels-last must be at least 5% faster to be chosen


@dataclass(frozen=True)
class LayoutChoice:
    """The memory layout a run trains in, and why."""

    memory_format: str            # "channels_last" | "contiguous"
    speedup: float | None = None  # measured contiguous time / channels-last time, when measured here
    remembered: bool = False      # taken from an earlier measurement on this machine

    @property
    def channels_last(self) -> bool:
        """True when inputs and weights use the channels-last layout."""
        return self.memory_format == "channels_last"

    def describe(self) -> str | None:
        """One line for the run's log, or None when nothing was measured."""
        if self.speedup is None:
            return None
        layout = "channels-last" if self.channels_last else "standard (contiguous)"
        how = "measured earlier on this machine" if self.remembered else "measured now, remembered for later runs"
        return f"CPU memory layout: {layout}; channels-last trains x{self.speedup:.2f} as fast here ({how})."


def tuning_key(arch: str, image_size: tuple[int, int], batch: int, freeze: str) -> str:
    """What a layout measurement depends on: software, processor, threads and the model's workload."""
    return "|".join([f"torch {torch.__version__}", platform.machine(), platform.processor() or "cpu",
                     f"threads {torch.get_num_threads()}", arch, f"{image_size[0]}x{image_size[1]}",
                     f"batch {batch}", f"freeze {freeze}"])


def _tuning_path() -> Path:
    return user_cache_dir() / TUNING_FILE


def _load() -> dict:
    try:
        data = json.loads(_tuning_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}   # a missing or damaged tuning file only means measuring again
    return data if isinstance(data, dict) else {}


def _remember(key: str, speedup: float) -> None:
    data = _load()
    data[key] = {"channels_last_speedup": round(speedup, 4)}
    try:
        atomic_write_json(_tuning_path(), data)
    except UserError:
        pass        # a read-only cache folder: measure again next time


def _seconds_per_step(model: nn.Module, inputs: torch.Tensor) -> float:
    started = time.perf_counter()
    output = model(inputs)
    output.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def measure_channels_last_speedup(model: nn.Module, image_size: tuple[int, int], batch: int) -> float:
    """Contiguous step time / channels-last step time of forward + backward on a copy of `model`.

    The model itself is untouched (its BatchNorm statistics, gradients and the global RNG too).
    Layouts alternate step by step and the fastest step of each counts: other programs only ever add
    time, so on a busy machine the minimum is the figure that reflects the layout.
    """
    probe = copy.deepcopy(model).cpu()
    probe.train()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 3, *image_size, generator=generator)
    layouts = {"contiguous": (probe, inputs)}
    clone = copy.deepcopy(probe).to(memory_format=torch.channels_last)
    layouts["channels_last"] = (clone, inputs.contiguous(memory_format=torch.channels_last))
    times: dict[str, list[float]] = {name: [] for name in layouts}
    with torch.random.fork_rng(devices=[]):
        for _ in range(PROBE_STEPS):
            for name, (net, x) in layouts.items():
                times[name].append(_seconds_per_step(net, x))
    return min(times["contiguous"][1:]) / min(times["channels_last"][1:])


def choose_layout(requested: str, device: torch.device, model: nn.Module, arch: str,
                  image_size: tuple[int, int], batch: int, freeze: str) -> LayoutChoice:
    """The memory layout to train in: `requested` unless "auto", which means channels-last on CUDA,
    contiguous on Apple MPS, and on a CPU whichever measured faster (see the module docstring)."""
    if requested != "auto":
        return LayoutChoice(requested)
    if device.type == "cuda":
        return LayoutChoice("channels_last")
    if device.type != "cpu":
        return LayoutChoice("contiguous")
    probe_batch = max(1, min(batch, 16))
    key = tuning_key(arch, image_size, probe_batch, freeze)
    known = _load().get(key)
    if isinstance(known, dict) and isinstance(known.get("channels_last_speedup"), (int, float)):
        speedup, remembered = float(known["channels_last_speedup"]), True
    else:
        try:
            speedup = measure_channels_last_speedup(model, image_size, probe_batch)
        except (RuntimeError, MemoryError):   # an architecture or machine that cannot run the probe
            return LayoutChoice("contiguous")
        remembered = False
        _remember(key, speedup)
    return LayoutChoice("channels_last" if speedup >= MIN_GAIN else "contiguous", speedup, remembered)
