"""The Training panel's work on the engine worker: where a new run goes, and the job that creates a run (unless
resuming) and trains it, relaying the engine's events (`core.training.run.train_run`, logged to the run's
log.txt). Kept apart from the panel so that each can be read and tested alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed
from desktop_tl.core.runs.run_log import logged
from desktop_tl.gui.worker import JobContext

TRAIN_JOB = "train"


def new_run_dir(base: Path) -> Path:
    """A fresh timestamped run folder name under `base` (not created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = base / f"run-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = base / f"run-{stamp}-{n}"
    return candidate


def train_job(run_dir: Path, resume: bool, index: DatasetIndex | None, config: TrainConfig,
              split: SplitConfig) -> Callable[[JobContext], Path]:
    """The worker job: create the run (unless resuming) with these settings, then train it, relaying each event;
    a Failed event ends the job as an error."""
    def job(ctx: JobContext) -> Path:
        import torch

        from desktop_tl.core.runs.folder import create_run
        from desktop_tl.core.training.devices import compute_threads
        from desktop_tl.core.training.run import train_run

        torch.set_num_threads(compute_threads())
        if not resume:
            create_run(run_dir, index, config, split, should_stop=ctx.should_stop)
        for event in logged(run_dir, train_run(run_dir, ctx.control)):
            if isinstance(event, Failed):
                raise UserError(event.what, event.hint)
            ctx.event(event)
        return run_dir
    return job


def run_summary(status: str, history: list[dict], name: str) -> str:
    """One log line for an opened run: its state, the epochs saved and the best validation loss."""
    state = {"finished": "finished", "interrupted": "interrupted; press Resume to continue it",
             "created": "not started yet", "damaged": "damaged (its run.json cannot be read)"}.get(status, status)
    line = f"Run {name}: {state}"
    losses = [(row["val_loss"], row["epoch"]) for row in history
              if isinstance(row.get("val_loss"), (int, float)) and isinstance(row.get("epoch"), int)]
    if history:
        line += f"; {len(history)} epochs saved"
    if losses:
        loss, epoch = min(losses)
        line += f", best validation loss {loss:.3f} at epoch {epoch}"
    return line + "."
