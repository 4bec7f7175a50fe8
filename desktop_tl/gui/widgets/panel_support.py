"""Small pieces shared by the data, evaluation and export panels.

- `JobClient`: one panel's view of the shared `EngineController`; it forwards results,
  failures and progress only for the jobs this panel submitted.
- `MessageBar`: the one widget that shows an error (what + what to do) or a note inside a panel.
- `JobProgress`: a progress bar with a Cancel button, bound to a `JobClient`.
- `preview_panel`: any panel on its own (`python -m desktop_tl.gui.<panel>`), for a quick look.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from typing import Any

from PySide6.QtCore import QObject, QSize, Qt, Signal, SignalInstance, Slot
from PySide6.QtWidgets import QApplication, QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QWidget

from desktop_tl.core.events import Failed
from desktop_tl.gui.state import AppState
from desktop_tl.gui.worker import EngineController, JobContext

BUSY_MESSAGE = "Another task is running (training, import or export). Wait for it to finish, then try again."


class JobClient(QObject):
    """Submits jobs for one panel and relays only that panel's outcomes.

    The controller is already free when an outcome arrives, so a handler may start a follow-up job at once.
    """

    sig_result = Signal(str, object)
    """(job kind, result) of a job this client submitted."""
    sig_failed = Signal(str, object)
    """(job kind, core.events.Failed) of a job this client submitted."""
    sig_progress = Signal(int, int)
    """(done, total) while one of this client's jobs runs."""
    sig_running = Signal(bool)
    """True when one of this client's jobs starts, False when it ended (before sig_result/sig_failed)."""
    sig_event = Signal(object)
    """An engine event dataclass (training: RunStarted, BatchProgress, ...) while one of this client's jobs runs."""

    def __init__(self, controller: EngineController, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.active: str | None = None
        controller.sig_result.connect(self._on_result)
        controller.sig_failed.connect(self._on_failed)
        controller.sig_progress.connect(self._on_progress)
        controller.sig_event.connect(self._on_event)

    @property
    def running(self) -> bool:
        """True while a job of this client runs."""
        return self.active is not None

    def submit(self, kind: str, run: Callable[[JobContext], Any]) -> bool:
        """Start `run` on the worker; False when the worker is busy with another job."""
        if not self.controller.submit(kind, run):
            return False
        self.active = kind
        self.sig_running.emit(True)
        return True

    def cancel(self) -> None:
        """Ask this client's running job to stop."""
        if self.active is not None:
            self.controller.stop()

    def pause(self, paused: bool) -> None:
        """Pause or continue this client's running job."""
        if self.active is not None:
            self.controller.pause(paused)

    @Slot(str, object)
    def _on_result(self, kind: str, result: object) -> None:
        if self._finish(kind):
            self.sig_result.emit(kind, result)

    @Slot(str, object)
    def _on_failed(self, kind: str, failure: Failed) -> None:
        if self._finish(kind):
            self.sig_failed.emit(kind, failure)

    def _finish(self, kind: str) -> bool:
        """True (and running turned off) when `kind` is this client's job."""
        if kind != self.active:
            return False
        self.active = None
        self.sig_running.emit(False)
        return True

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        if self.active is not None:
            self.sig_progress.emit(done, total)

    @Slot(object)
    def _on_event(self, event: object) -> None:
        if self.active is not None:
            self.sig_event.emit(event)


class MessageBar(QFrame):
    """Errors (what went wrong, then what to do; red) and notes (plain) inside a panel; the user can
    dismiss it. The one message widget of the window: every panel shows its problems the same way."""

    _STYLES = {"error": "#messageBar { background: #fdecea; border: 1px solid #e57373; border-radius: 4px; }"
                        "#messageBar QLabel { color: #b71c1c; }",
               "note": "#messageBar { background: #f3f6fa; border: 1px solid #c5d3e3; border-radius: 4px; }"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.kind = ""
        self._until: SignalInstance | None = None     # the signal that makes the message shown out of date
        self.label = QLabel(self, wordWrap=True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QToolButton(self, text="✕", autoRaise=True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(self.clear_message)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def text(self) -> str:
        """The message shown, as plain text ("" when hidden)."""
        return self.label.text()

    def show_error(self, what: str, hint: str = "", until: SignalInstance | None = None) -> None:
        """Show a failure: what went wrong, then what to do (see `show_note` for `until`)."""
        self._show("error", what + (f"\nWhat to do: {hint}" if hint else ""), until)

    def show_failure(self, failure: Failed) -> None:
        """Show a `Failed` from the worker."""
        self.show_error(failure.what, failure.hint)

    def show_note(self, text: str, until: SignalInstance | None = None) -> None:
        """Show a neutral note (an empty one clears the bar); with `until`, it goes away when that signal fires
        (the user did what it asked: exported the run, say), unless another message replaced it first."""
        if not text:
            self.clear_message()
            return
        self._show("note", text, until)

    def clear_message(self) -> None:
        """Hide the bar."""
        self._forget_until()
        self.kind = ""
        self.label.clear()
        self.hide()

    def _show(self, kind: str, text: str, until: SignalInstance | None = None) -> None:
        self._forget_until()
        self.kind = kind
        self.setStyleSheet(self._STYLES[kind])
        self.label.setText(text)
        self.show()
        if until is not None:
            until.connect(self._outdated)
            self._until = until

    def _outdated(self, *_args) -> None:
        self.clear_message()

    def _forget_until(self) -> None:
        if self._until is not None:
            self._until.disconnect(self._outdated)
            self._until = None


class JobProgress(QWidget):
    """A progress bar and a Cancel button, visible while the client's job runs.

    `cancellable` names the job kinds that check for stop requests (None: all of them);
    the Cancel button shows only for those.
    """

    def __init__(self, client: JobClient, parent: QWidget | None = None,
                 cancellable: Collection[str] | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.cancellable = None if cancellable is None else set(cancellable)
        self.bar = QProgressBar(self)
        self.bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.clicked.connect(client.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.cancel_button)
        client.sig_running.connect(self._on_running)
        client.sig_progress.connect(self._on_progress)
        self.hide()

    def allow_cancel(self, kinds: Collection[str]) -> None:
        """Show Cancel for these job kinds too (another room's jobs on this client that check for stop)."""
        if self.cancellable is not None:
            self.cancellable |= set(kinds)

    @Slot(bool)
    def _on_running(self, running: bool) -> None:
        self.bar.setRange(0, 0)          # busy indicator until the first progress report
        kind = self.client.active
        self.cancel_button.setVisible(running and (self.cancellable is None or kind in self.cancellable))
        self.cancel_button.setEnabled(running)
        self.setVisible(running)

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(done)
            self.bar.setFormat(f"{done} / {total}")


FRAME_ROOM = QSize(24, 64)
"""Room a dialog leaves on the screen for its frame and title bar and a task bar."""


def size_within(preferred: QSize, available: QSize) -> QSize:
    """`preferred`, shrunk where needed to fit a screen of `available` size with FRAME_ROOM to spare."""
    return QSize(min(preferred.width(), available.width() - FRAME_ROOM.width()),
                 min(preferred.height(), available.height() - FRAME_ROOM.height()))


def resize_within_screen(widget: QWidget, width: int, height: int) -> None:
    """Give a dialog its preferred size, or as much of it as its screen holds (a 1024x700 laptop screen too)."""
    screen = widget.screen() or QApplication.primaryScreen()
    preferred = QSize(width, height)
    widget.resize(size_within(preferred, screen.availableGeometry().size()) if screen is not None else preferred)


def preview_panel(panel_type: Callable[[AppState, EngineController], QWidget], width: int, height: int,
                  prepare: Callable[[QWidget, AppState, list[str]], None] | None = None) -> int:
    """Show one panel on its own, with a fresh state and engine; the exit status.

    `prepare(panel, state, args)` may use the command-line arguments (a dataset or run folder).
    """
    app = QApplication(sys.argv)
    engine = EngineController()
    state = AppState()
    panel = panel_type(state, engine)
    if prepare is not None:
        prepare(panel, state, sys.argv[1:])
    panel.resize(width, height)
    panel.show()
    status = app.exec()
    engine.shutdown()
    return status
