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
from desktop_tl.core.models.precision import autocast
from desktop_tl.core.paths import user_cache_dir

TUNING_FILE = "tuning.json"
PROBE_STEPS = 6          # per layout: the first is a warm-up, the fastest of the others counts
MIN_GAIN = 1.05          # channels-last must be at least 5% faster to be chosen
PROBE_BATCH = 4          # images per timed step: the choice needs the faster layout, not the exact ratio, and
                         # batch 4 gives the same answer as batch 16 in a quarter of the time (EfficientNet-Lite0
                         # at 224 px on 2 cores: ratio 1.47-1.65 in 3.5-3.9 s vs 1.36-1.76 in 15-18 s)


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
        how = "measured earlier on this machine" if self.remembered else "measured now, remembered for later runs"
        if self.channels_last:
            return f"CPU memory layout: channels-last, x{self.speedup:.2f} as fast as the standard layout here ({how})."
        return (f"CPU memory layout: standard; channels-last would run x{self.speedup:.2f} as fast here, "
                f"not worth it ({how}).")


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


def remembered(key: str) -> dict | None:
    """What an earlier measurement on this machine stored under `key`, if anything."""
    known = _load().get(key)
    return known if isinstance(known, dict) else None


def remember(key: str, value: dict) -> None:
    """Store a measurement under `key` in tuning.json (atomically; silently not when the folder is read-only)."""
    data = _load()
    data[key] = value
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
    probe_batch = max(1, min(batch, PROBE_BATCH))
    key = tuning_key(arch, image_size, probe_batch, freeze)
    known = remembered(key)
    from_memory = known is not None and isinstance(known.get("channels_last_speedup"), (int, float))
    if from_memory:
        speedup = float(known["channels_last_speedup"])
    else:
        try:
            speedup = measure_channels_last_speedup(model, image_size, probe_batch)
        except (RuntimeError, MemoryError):   # an architecture or machine that cannot run the probe
            return LayoutChoice("contiguous")
        remember(key, {"channels_last_speedup": round(speedup, 4)})
    return LayoutChoice("channels_last" if speedup >= MIN_GAIN else "contiguous", speedup, from_memory)


AUTO_BATCH_START = 32
AUTO_BATCH_LIMIT = 512      # beyond this, larger batches rarely train faster and generalise worse
AUTO_BATCH_MARGIN = 0.9     # keep 10% of the largest batch that fitted free (fragmentation, peaks)


@dataclass(frozen=True)
class BatchSizeSearch:
    """Outcome of the automatic batch size search."""

    batch_size: int
    largest_fitting: int      # the largest batch the probes ran without running out of memory
    limit: int                # the cap from the dataset size and AUTO_BATCH_LIMIT
    probes: int               # forward + backward passes tried
    seconds: float

    def describe(self, device_name: str) -> str:
        """One line for the run's log."""
        fitted = (f"the largest that fits in the memory of {device_name} is {self.largest_fitting}"
                  if self.largest_fitting < self.limit else f"{self.limit} fits in the memory of {device_name}")
        return (f"Automatic batch size: {self.batch_size} ({fitted}; capped at {self.limit} so that an epoch has "
                f"several steps; {self.probes} probes in {self.seconds:.1f} s).")


def batch_limit(train_images: int) -> int:
    """The largest automatic batch: a power of two that leaves at least 8 steps per epoch, 8 to 512."""
    limit = 8
    while limit * 2 <= min(AUTO_BATCH_LIMIT, train_images // 8):
        limit *= 2
    return limit


def search_batch_size(fits, limit: int, start: int = AUTO_BATCH_START) -> tuple[int, int]:
    """The largest batch size b <= `limit` with `fits(b)` true, assuming fits is monotone; (b, probes).

    Doubles from `start` until a probe fails (or `limit`), halves when `start` already fails, then
    bisects the gap to within 1/8 of its lower end: typically 5-8 probes. 0 when even 1 fails.
    """
    probes = 0

    def probe(batch: int) -> bool:
        nonlocal probes
        probes += 1
        return fits(batch)

    good, bad = 0, limit + 1
    batch = min(start, limit)
    while True:
        if probe(batch):
            good = batch
            if batch >= limit:
                return good, probes
            batch = min(batch * 2, limit)
        else:
            bad = batch
            if good or batch == 1:
                break
            batch //= 2
    while bad - good > max(1, good // 8):
        middle = (good + bad) // 2
        if probe(middle):
            good = middle
        else:
            bad = middle
    return good, probes


def out_of_memory_probe(model: nn.Module, device: torch.device, image_size: tuple[int, int], channels_last: bool,
                        amp_dtype: torch.dtype | None):
    """`fits(batch)`: whether one training forward + backward of `batch` images fits on `device`, with room
    for AdamW's two state tensors per trainable weight. The model's weights, BatchNorm statistics,
    gradients and the RNG are left as they were."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def fits(batch: int) -> bool:
        buffers = {name: b.clone() for name, b in model.named_buffers()}
        devices = [device] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                optimizer_state = torch.empty(2 * trainable, device=device)
                inputs = torch.randn(batch, 3, *image_size, device=device)
                if channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                with autocast(device, amp_dtype):
                    loss = model(inputs).float().square().mean()
                loss.backward()
                del optimizer_state, inputs, loss
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            model.zero_grad(set_to_none=True)
            with torch.no_grad():
                for name, b in model.named_buffers():
                    b.copy_(buffers[name])
            if device.type == "cuda":
                torch.cuda.empty_cache()

    return fits


def automatic_batch_size(model: nn.Module, device: torch.device, image_size: tuple[int, int], limit: int,
                         channels_last: bool, amp_dtype: torch.dtype | None) -> BatchSizeSearch:
    """The batch size for `--batch-size auto` on a GPU: 90% of the largest that fits (a multiple of 8
    when above 8), at most `limit` (see `batch_limit`). Raises UserError when not even one image fits."""
    started = time.perf_counter()
    was_training = model.training
    model.train()
    try:
        largest, probes = search_batch_size(out_of_memory_probe(model, device, image_size, channels_last, amp_dtype),
                                            limit)
    finally:
        model.train(was_training)
    if largest == 0:
        raise UserError("Out of memory even with one image at a time.",
                        "Lower --image-size, pick a smaller model, or use --device cpu.")
    batch = largest if largest >= limit else max(1, int(largest * AUTO_BATCH_MARGIN))
    if batch > 8:
        batch -= batch % 8
    return BatchSizeSearch(batch, largest, limit, probes, time.perf_counter() - started)


COMPILE_PROBE_STEPS = 8        # eager steps timed before deciding (the first 2 are warm-up)
COMPILE_SECONDS = 60.0         # assumed cost of compiling a timm model (typically 30-90 s on a GPU)
COMPILE_STEP_GAIN = 0.2        # assumed share of a step's time that compiling saves (typically 10-40%)


def compile_pays_off(eager_step_seconds: list[float], remaining_steps: int) -> tuple[bool, str]:
    """Whether `torch.compile` is worth it for the rest of a run, from its timed eager steps; and why.

    It pays when the time it is expected to save over the remaining steps exceeds the time compiling takes.
    """
    timed = sorted(eager_step_seconds[2:] or eager_step_seconds)
    step = timed[len(timed) // 2]
    saving = remaining_steps * step * COMPILE_STEP_GAIN
    figures = (f"{remaining_steps} steps left at {step:.3f} s each; compiling is expected to save about "
               f"{saving:.0f} s and to cost about {COMPILE_SECONDS:.0f} s")
    return saving > COMPILE_SECONDS, figures
