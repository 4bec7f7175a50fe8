"""Training threads on a shared CPU: measured at the start of a run and after every epoch.

With one torch thread per core, a single other busy process slows a training step about x3 (OpenMP threads
spin while they wait for the core that is taken); with one thread fewer than the cores other programs leave
free, the step is about twice as fast as that, and on an idle machine all threads are fastest
(benchmarks/bench_contention.py, RESULTS.md). So before the first epoch and after each one, the run looks at
how many cores other processes kept busy for a fraction of a second, while it itself waits, and trains with
the rest (at least one thread, at most what torch started with). Linux only (/proc/stat); elsewhere the
threads stay as torch chose them.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

SAMPLE_SECONDS = 0.25


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (None where /proc/stat is not available)."""
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def others_busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many cores processes other than this one kept busy over the next `seconds` (None: not measurable)."""
    busy_before, own_before, started = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
    if busy_before is None:
        return None
    time.sleep(seconds)
    busy_after, own_after = _busy_cpu_seconds(), time.process_time()
    if busy_after is None:
        return None
    return max(0.0, (busy_after - busy_before - (own_after - own_before)) / (time.perf_counter() - started))


def threads_to_use(cores: int, most: int, others_busy: float) -> int:
    """Threads for training when other processes keep `others_busy` cores busy: the cores they leave (a core
    counts as taken from half a core on), at least one, at most `most`."""
    return max(1, min(most, cores - math.floor(others_busy + 0.5)))


class ThreadShare:
    """Sets torch's thread count for the share of the CPU other processes leave (see the module docstring)."""

    def __init__(self, enabled: bool) -> None:
        self.most, self.cores = torch.get_num_threads(), os.cpu_count() or 1
        self.enabled = enabled and _busy_cpu_seconds() is not None

    def adjust(self) -> str | None:
        """Measure and set the threads; a sentence for the log when the count changed, else None."""
        if not self.enabled:
            return None
        others = others_busy_cores()
        if others is None:
            return None
        threads, before = threads_to_use(self.cores, self.most, others), torch.get_num_threads()
        if threads == before:
            return None
        torch.set_num_threads(threads)
        if threads < self.most:
            return (f"Other programs keep about {others:.1f} of the {self.cores} cores busy: training uses "
                    f"{threads} thread{'s' * (threads != 1)} instead of {self.most}, which is faster on a "
                    "shared computer.")
        return f"The computer is free again: training uses all {threads} threads."

    def restore(self) -> None:
        """Back to the threads the run started with (the window trains further runs in the same process)."""
        if torch.get_num_threads() != self.most:
            torch.set_num_threads(self.most)
