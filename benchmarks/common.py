"""Shared helpers of the CPU benchmarks: a replicated real-image dataset, timing, machine line."""

from __future__ import annotations

import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo" / "images"
sys.path.insert(0, str(ROOT))


def isolated_cache() -> Path:
    """Point desktop_tl's caches and stores at a fresh temporary folder (nothing of the user's is touched)."""
    base = Path(tempfile.mkdtemp(prefix="dtl_bench_"))
    os.environ["DESKTOP_TL_CACHE_DIR"] = str(base / "cache")
    os.environ["DESKTOP_TL_DATA_DIR"] = str(base / "data")
    os.environ["HF_HUB_OFFLINE"] = "1"
    return base


def replicated_dataset(target: Path, copies: int, side: int | None = None, per_class: int | None = None) -> Path:
    """The demo images, `copies` distinct variants of each (flips/rotations and JPEG quality, so no two
    files share bytes), optionally resized so the shorter side is `side` (like larger photos)."""
    for class_dir in sorted(p for p in DEMO.iterdir() if p.is_dir()):
        out = target / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        files = sorted(class_dir.glob("*.jpg"))[:per_class]
        for k in range(copies):
            for f in files:
                image = Image.open(f).convert("RGB")
                if side:
                    image = image.resize((side, side), Image.Resampling.BICUBIC)
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if k % 2 else image
                image = image.rotate(90 * (k // 2 % 4))
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=95 - k % 7)
                (out / f"{f.stem}_{k}.jpg").write_bytes(buffer.getvalue())
    return target


def machine() -> str:
    """One line naming the machine, with the load at the time."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import torch

    return (f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or platform.system()}), "
            f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {load:.2f} at start")


def training_step_seconds(model, inputs, labels, steps: int) -> list[float]:
    """Wall seconds of `steps` plain training steps (forward, cross-entropy, backward, AdamW) on one batch."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds


class Timer:
    """`with Timer() as t: ...; t.seconds`."""

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started


def epoch_train_seconds(events) -> tuple[dict[int, float], list]:
    """Consume a train_run stream; wall seconds of each epoch's training part (batches, data loading
    included, validation excluded), and the events."""
    from desktop_tl.core.events import BatchProgress, Failed

    seen, seconds, last = [], {}, time.perf_counter()
    start_of: dict[int, float] = {}
    for event in events:
        now = time.perf_counter()
        if isinstance(event, BatchProgress):
            start_of.setdefault(event.epoch, last)
            seconds[event.epoch] = now - start_of[event.epoch]
        if isinstance(event, Failed):
            raise RuntimeError(event)
        seen.append(event)
        last = time.perf_counter()
    return seconds, seen


def engine_epochs(events):
    """Drive a train_run stream one epoch per `next()`: yields the wall seconds of each epoch's training
    part (data loading included, validation and checkpoints excluded). Lets benchmarks interleave
    systems epoch by epoch, so contention from other processes hits them alike."""
    from desktop_tl.core.events import BatchProgress, EpochEnd, Failed

    last, start, end = time.perf_counter(), None, None
    for event in events:
        now = time.perf_counter()
        if isinstance(event, Failed):
            raise RuntimeError(event)
        if isinstance(event, BatchProgress):
            start = last if start is None else start
            end = now
        if isinstance(event, EpochEnd):
            yield end - start
            start = None
        last = time.perf_counter()


def interleave(systems: dict, epochs: int) -> dict[str, list[float]]:
    """Run the epoch generators of `systems` round-robin; seconds per epoch of each."""
    times = {name: [] for name in systems}
    for _ in range(epochs):
        for name, gen in systems.items():
            times[name].append(next(gen))
    for gen in systems.values():
        for _ in gen:   # let each finish (final evaluation) outside the timed part
            pass
    return times
