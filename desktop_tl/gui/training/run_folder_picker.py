"""The Training panel's run-folder row: the folder typed or chosen (empty: a new timestamped folder), Choose…,
and Runs…, the list of the project's runs. It says when the folder changed (after typing pauses: reading a
folder's status is JSON, not every keystroke)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

STATUS_DEBOUNCE_MS = 250


class RunFolderPicker(QWidget):
    """The run-folder row; `start_dir()` gives where Choose… opens when nothing is chosen yet."""

    sig_changed = Signal()
    """The folder shown changed (debounced while typing)."""
    sig_runs_requested = Signal()
    """Runs… was pressed."""

    def __init__(self, start_dir: Callable[[], Path], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start_dir = start_dir
        self.run_folder = QLineEdit(self)
        self.run_folder.setObjectName("runFolder")
        self._status_timer = QTimer(self, singleShot=True, interval=STATUS_DEBOUNCE_MS)
        self._status_timer.timeout.connect(self.sig_changed)
        self.run_folder.textChanged.connect(lambda _text: self._status_timer.start())
        self.choose_button = QPushButton("Choose…", self)
        self.choose_button.setToolTip("Pick a run folder; an unfinished run there can be resumed")
        self.choose_button.clicked.connect(self.choose)
        self.runs_button = QPushButton("Runs…", self)
        self.runs_button.setObjectName("runsButton")
        self.runs_button.setToolTip("The project's runs (finished, interrupted, running): see their curves and "
                                    "log, resume an interrupted one")
        self.runs_button.clicked.connect(self.sig_runs_requested)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Run folder", self))
        row.addWidget(self.run_folder, 1)
        row.addWidget(self.choose_button)
        row.addWidget(self.runs_button)

    def chosen(self) -> Path | None:
        """The run folder typed or chosen, if any."""
        text = self.run_folder.text().strip()
        return Path(text).expanduser() if text else None

    def set_folder(self, folder: Path | None) -> None:
        """Show `folder` (None: a new timestamped folder at the next Start)."""
        self.run_folder.setText(str(folder) if folder else "")

    @Slot()
    def choose(self) -> None:
        """Ask for a run folder (an existing unfinished run there is resumed)."""
        start = self.chosen() or self.start_dir()
        folder = QFileDialog.getExistingDirectory(self, "Run folder", str(start if start.exists() else Path.home()))
        if folder:
            self.set_folder(Path(folder))
