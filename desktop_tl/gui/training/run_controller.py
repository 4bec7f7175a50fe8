"""The Training panel's run controller: whether a run may start in a folder (RunFolder's rule, the CLI's too),
the training job built and submitted to the engine worker, pause and stop, and what the run does as signals.
No widgets: the panel (`training_monitor`) shows what it says."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed, Finished
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.gui.state import AppState
from desktop_tl.gui.training.training_jobs import TRAIN_JOB, new_run_dir, train_job
from desktop_tl.gui.widgets.panel_support import JobClient
from desktop_tl.gui.worker import EngineController


class RunController(QObject):
    """One training run at a time on the engine worker, from the state's dataset, settings and split."""

    sig_started = Signal(object, bool)
    """(run folder, True when resumed) a training job was submitted."""
    sig_event = Signal(object)
    """An engine event (core.events) of the run in training."""
    sig_ended = Signal(str, object, object)
    """("Finished", "Stopped" or "Failed", the run's core.events.Finished or None, core.events.Failed or None)."""

    def __init__(self, state: AppState, controller: EngineController, runs_base: Callable[[], Path],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.runs_base = runs_base
        self.jobs = JobClient(controller, self)
        self.active_run: Path | None = None
        self.paused = False
        self._last_finished: Finished | None = None
        self.jobs.sig_event.connect(self._on_event)
        self.jobs.sig_result.connect(self._on_result)
        self.jobs.sig_failed.connect(self._on_failed)

    def start_action(self, chosen: Path | None) -> tuple[str, Failed | None]:
        """("start" or "resume", None) by RunFolder's rule for `chosen` (None: a new folder), or why training
        cannot start there."""
        try:
            action = RunFolder(chosen).training_start(resume=True) if chosen is not None else "start"
        except UserError as exc:
            return "refused", Failed(exc.what, exc.hint)
        if action == "finished":
            return action, Failed(f"{chosen} already holds a finished run.",
                                  "Clear the run folder field to start a new run, or choose another folder.")
        if action == "start" and self.state.dataset is None:
            return action, Failed("No dataset imported yet.",
                                  "Import a dataset folder (drop it on the window) before training.")
        return action, None

    def start(self, chosen: Path | None) -> Failed | None:
        """Create the run in `chosen` (None: a new folder under the runs base), or resume it there, and train it
        on the worker; None when it started, else why not."""
        if self.active_run is not None:
            return Failed("A run is training.", "Stop it first, or wait for it to finish.")
        action, refusal = self.start_action(chosen)
        if refusal is not None:
            return refusal
        resume = action == "resume"
        run_dir = chosen or new_run_dir(self.runs_base())
        job = train_job(run_dir, resume, self.state.dataset, self.state.config, self.state.split)
        if not self.jobs.submit(TRAIN_JOB, job):
            return Failed("Another task is running.", "Start training when it has finished.")
        self.active_run, self.paused, self._last_finished = run_dir, False, None
        # A full garbage collection over the whole heap (torch, timm, Qt wrappers) holds the GIL for a quarter of a
        # second; freezing the heap while training keeps those passes short.
        gc.freeze()
        self.sig_started.emit(run_dir, resume)
        return None

    def toggle_pause(self) -> bool:
        """Pause between batches, or continue; the new state (False without a run)."""
        if self.active_run is None:
            return False
        self.paused = not self.paused
        self.jobs.pause(self.paused)
        return self.paused

    def stop(self) -> bool:
        """Stop after the current batch (the last finished epoch is kept); False without a run."""
        if self.active_run is None:
            return False
        self.jobs.cancel()
        self.paused = False
        return True

    @Slot(object)
    def _on_event(self, event: object) -> None:
        if self.active_run is None:
            return
        if isinstance(event, Finished):
            self._last_finished = event
        self.sig_event.emit(event)

    @Slot(str, object)
    def _on_result(self, _kind: str, _result: object) -> None:
        if self.active_run is None:
            return
        finished = self._last_finished
        self._end("Stopped" if finished is not None and finished.stopped_by_user else "Finished", finished, None)

    @Slot(str, object)
    def _on_failed(self, _kind: str, failed: object) -> None:
        if self.active_run is None:
            return
        assert isinstance(failed, Failed)
        self._end("Failed", None, failed)

    def _end(self, label: str, finished: Finished | None, failed: Failed | None) -> None:
        gc.unfreeze()
        run_dir = self.active_run
        self.active_run, self.paused = None, False
        if finished is not None and run_dir is not None:     # the state first: listeners of sig_ended read it
            self.state.set_run(run_dir)
            metrics = finished.metrics
            if metrics is None and not finished.stopped_by_user:
                metrics = RunFolder(run_dir).metrics()        # the run had finished before
            self.state.set_metrics(metrics)                    # None for a stopped run: nothing evaluated yet
        self.sig_ended.emit(label, finished, failed)
