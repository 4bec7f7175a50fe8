"""One QObject worker on a QThread runs every engine job; the controller talks to it with signals.

The worker never touches widgets: it emits `sig_*` signals that carry the engine's own dataclasses.
Errors come back as `desktop_tl.core.events.Failed` data, never as exceptions across threads.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from desktop_tl.core.control import RunControl
from desktop_tl.core.errors import Cancelled, UserError
from desktop_tl.core.events import Failed


@dataclass(frozen=True)
class Job:
    """A unit of work for the worker: `kind` names it, `run(context)` does it on the worker thread."""

    kind: str                                   # "import" | "train" | "evaluate" | "export" | "predict" | ...
    run: Callable[[JobContext], Any]


class JobContext:
    """What a running job may use: progress and event reporting, and its RunControl (the Stop and Pause
    requests, which the engine checks: pass it to `train_run`, or `should_stop` to an import)."""

    def __init__(self, worker: EngineWorker) -> None:
        self._worker = worker
        self.control = RunControl()

    def progress(self, done: int, total: int) -> None:
        """Report progress of a counted job (files imported, images classified)."""
        self._worker.sig_progress.emit(done, total)

    def event(self, event: object) -> None:
        """Forward one engine event (a core dataclass) to the window."""
        self._worker.sig_event.emit(event)

    def should_stop(self) -> bool:
        """True once the user pressed Stop."""
        return self.control.stop_requested


class EngineWorker(QObject):
    """Runs one job at a time on its own thread."""

    sig_progress = Signal(int, int)
    """(done, total) of the current counted job."""
    sig_event = Signal(object)
    """One engine event dataclass (RunStarted, BatchProgress, EpochEnd, Message, Finished, ...)."""
    sig_job_done = Signal(str, bool, object)
    """(job kind, ok, outcome) once a job ended: ok is True with the job's result (DatasetIndex, metrics
    dict, ExportResult, ...) or False with a core.events.Failed. The worker is free again."""

    def __init__(self) -> None:
        super().__init__()
        self.context: JobContext | None = None

    @Slot(object)
    def run_job(self, job: Job) -> None:
        """Execute `job` (called on the worker thread through a queued signal)."""
        context = self.context
        ok = False
        try:
            outcome: object = job.run(context)
            ok = True
        except Cancelled:
            outcome = Failed("Stopped.", "", cancelled=True)
        except UserError as exc:
            outcome = Failed(exc.what, exc.hint)
        except MemoryError:
            outcome = Failed("The computer ran out of memory.",
                             "Lower the batch size or the image size, then try again.")
        except Exception as exc:  # noqa: BLE001 - any engine bug must reach the user, not kill the thread
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            outcome = Failed(f"Unexpected error during {job.kind}: {detail}",
                             "The app keeps working; try again, or report this message.")
        self.sig_job_done.emit(job.kind, ok, outcome)


class EngineController(QObject):
    """Lives on the GUI thread; owns the worker thread and allows one job at a time.

    Signal order for every accepted job: `sig_busy_changed(True)` (inside `submit`), then any
    `sig_progress` / `sig_event`, then, when the job ends, `busy` turns False, `sig_busy_changed(False)`,
    and last exactly one of `sig_result` / `sig_failed`. The controller is free before the outcome is
    relayed, so a slot on `sig_result` or `sig_failed` may submit the next job at once.
    """

    sig_progress = Signal(int, int)
    """Relayed from the worker."""
    sig_event = Signal(object)
    """Relayed engine event dataclass."""
    sig_result = Signal(str, object)
    """(job kind, result), after sig_busy_changed(False)."""
    sig_failed = Signal(str, object)
    """(job kind, core.events.Failed), after sig_busy_changed(False)."""
    sig_busy_changed = Signal(bool)
    """True when a job starts, False when it ended (before its sig_result / sig_failed)."""
    _sig_submit = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("desktop_tl-engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.thread)
        self._sig_submit.connect(self.worker.run_job)
        self.worker.sig_progress.connect(self.sig_progress)
        self.worker.sig_event.connect(self.sig_event)
        self.worker.sig_job_done.connect(self._on_job_done)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.start()
        self.current_kind: str | None = None

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return self.current_kind is not None

    def submit(self, kind: str, run: Callable[[JobContext], Any]) -> bool:
        """Start a job; returns False (and starts nothing) while another job runs."""
        if self.busy:
            return False
        self.worker.context = JobContext(self.worker)
        self.current_kind = kind
        self.sig_busy_changed.emit(True)
        self._sig_submit.emit(Job(kind, run))
        return True

    def stop(self) -> None:
        """Ask the running job to stop (training stops within one batch)."""
        if self.worker.context is not None:
            self.worker.context.control.pause(False)
            self.worker.context.control.stop()

    def pause(self, paused: bool) -> None:
        """Pause or continue the running job (training pauses between batches)."""
        if self.worker.context is not None:
            self.worker.context.control.pause(paused)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Stop any job, end the thread and wait for it; True when the thread ended."""
        self.stop()
        self.thread.quit()
        return self.thread.wait(timeout_ms)

    @Slot(str, bool, object)
    def _on_job_done(self, kind: str, ok: bool, outcome: object) -> None:
        """Mark the controller free, then relay the job's outcome (see the class docstring for the order)."""
        self.current_kind = None
        self.sig_busy_changed.emit(False)
        (self.sig_result if ok else self.sig_failed).emit(kind, outcome)
