"""The project's runs (Training panel > Runs…, File > Runs of this project…): finished, interrupted and running
runs with their recipe, date and best figure (core.runs.listing). Selecting one shows its curves and log in the
Training panel; Resume continues an interrupted one; Make current opens its evaluation and export."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.runs.listing import RunSummary
from desktop_tl.gui.widgets.panel_support import resize_within_screen

COLUMNS = ("Run", "Status", "Recipe", "Created", "Best result")
STATUS_WORDS = {"finished": "finished", "interrupted": "interrupted", "running": "running", "created": "not started",
                "damaged": "damaged", "missing": "folder missing", "new": "empty", "occupied": "not a run"}


class RunsDialog(QDialog):
    """A table of the project's runs, newest first, with Resume and Make current (see the module docstring).
    `list_runs` reads them; `busy` says whether the engine is busy (Resume and Make current wait for it)."""

    sig_selected = Signal(object)
    """Path of the run the user selected (show its curves and log)."""
    sig_resume = Signal(object)
    """Path of the interrupted run to continue."""
    sig_make_current = Signal(object)
    """Path of the run to make the window's current run."""

    def __init__(self, list_runs: Callable[[], list[RunSummary]], busy: Callable[[], bool],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runsDialog")
        self.setWindowTitle("Runs of this project")
        self._list_runs, self._busy = list_runs, busy
        self.runs: list[RunSummary] = []
        self.intro = QLabel(wordWrap=True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("runsTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.cellDoubleClicked.connect(lambda _row, _column: self.make_current())
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the selected interrupted run from its last saved epoch")
        self.resume_button.clicked.connect(self.resume)
        self.current_button = QPushButton("Make current")
        self.current_button.setToolTip("Show the selected run's dataset, evaluation and export in the other panels")
        self.current_button.clicked.connect(self.make_current)
        close_button = QPushButton("Close")
        close_button.clicked.connect(self.close)
        for button in (self.resume_button, self.current_button, close_button):
            button.setAutoDefault(False)        # Return in the table must not resume a run
        buttons = QHBoxLayout()
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.current_button)
        buttons.addStretch(1)
        buttons.addWidget(close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        resize_within_screen(self, 760, 320)

    def refresh(self) -> None:
        """Read the runs again, keeping the selected one."""
        chosen = self.selected()
        self.runs = self._list_runs()
        self.intro.setText(
            "The runs the project records and those in its runs folder, newest first. Select one to see its "
            "curves and log in the Training panel." if self.runs else
            "No runs yet: train one in the Training panel (save the project to keep its runs together).")
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)) if run.created else ""
            epochs = f"{run.epochs} epoch{'s' if run.epochs != 1 else ''}" if run.epochs else ""
            texts = (run.path.name, STATUS_WORDS.get(run.status, run.status), run.recipe, created,
                     "; ".join(t for t in (run.best, epochs) if t))
            for column, text in enumerate(texts):
                item = QTableWidgetItem(text)
                item.setToolTip(str(run.path))
                self.table.setItem(row, column, item)
            if chosen is not None and run.path == chosen.path:
                self.table.selectRow(row)
        self.table.blockSignals(False)
        self.update_buttons()

    def selected(self) -> RunSummary | None:
        """The selected run, if any."""
        rows = self.table.selectionModel().selectedRows()
        return self.runs[rows[0].row()] if rows and rows[0].row() < len(self.runs) else None

    def select(self, path: Path) -> bool:
        """Select the run in `path` (as a click would); False when it is not listed."""
        for row, run in enumerate(self.runs):
            if run.path.resolve() == Path(path).resolve():
                self.table.selectRow(row)
                return True
        return False

    @Slot()
    def _on_selection(self) -> None:
        run = self.selected()
        if run is not None and run.status not in ("missing", "running"):
            self.sig_selected.emit(run.path)
        self.update_buttons()

    def update_buttons(self) -> None:
        """Resume for a resumable run, Make current for one with epochs, both while the engine is free."""
        run, busy = self.selected(), self._busy()
        self.resume_button.setEnabled(run is not None and run.resumable and not busy)
        self.current_button.setEnabled(run is not None and run.has_epochs and not busy)
        self.resume_button.setToolTip("Another task is running" if busy else
                                      "Continue the selected interrupted run from its last saved epoch")

    @Slot()
    def resume(self) -> None:
        """Continue the selected run in the Training panel."""
        run = self.selected()
        if run is not None and run.resumable and not self._busy():
            self.sig_resume.emit(run.path)

    @Slot()
    def make_current(self) -> None:
        """Make the selected run the window's current run."""
        run = self.selected()
        if run is not None and run.has_epochs and not self._busy():
            self.sig_make_current.emit(run.path)
