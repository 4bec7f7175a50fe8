"""Monitor panel: a silent trial in the window.

Choose an exported model (or the current run's), the folder new images arrive in and the log, then Start: the
watch (`core.deploy.watch`, the engine of `desktop-tl watch`) runs on the engine worker until Stop, and each
entry it logs arrives as a `TrialLogged` event. The panel shows the latest cases (newest first) with the heat
map of the selected one, the counts by status, and the drift chart: the share of images flagged unfamiliar per
50 images against the share the model's check flags on images of its training kind. Report and With true
labels… run `core.evaluation.trial.monitor_report` on the log (the figures beside the promised ones), once the
watch is stopped: while it runs, the worker is watching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.decision import Familiarity
from desktop_tl.core.evaluation.trial import STATUSES, counts_over_time, monitor_text
from desktop_tl.core.events import Failed, TrialLogged
from desktop_tl.core.reporting import counted
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.gui.monitor.monitor_jobs import TRIAL_REPORT_JOB, WATCH_JOB, trial_report_job, watch_job
from desktop_tl.gui.state import AppState
from desktop_tl.gui.widgets.item_models import Column, RecordTableModel
from desktop_tl.gui.widgets.panel_support import BUSY_MESSAGE, JobClient, MessageBar, preview_panel
from desktop_tl.gui.worker import EngineController

SHOWN_CASES = 1000          # the table keeps the latest this many
KEPT_HEATMAPS = 200         # heat maps kept for the latest this many cases
DRIFT_WINDOW = 50           # images per point of the drift chart
REFRESH_MS = 500            # the table, counts and chart are redrawn this often while entries arrive


def cases_model(parent=None) -> RecordTableModel[dict[str, Any]]:
    """The latest cases: time, path, label, probability, status (a skipped file shows its reason)."""
    return RecordTableModel([
        Column("UTC", lambda e: str(e.get("time", ""))[5:19].replace("T", " "),
               tooltip=lambda e: str(e.get("time", ""))),
        Column("Image", lambda e: e.get("path", "")),
        Column("Label", lambda e: e.get("label") or "—"),
        Column("Probability", lambda e: e.get("probability"), text=lambda v: "—" if v is None else f"{v:.3f}",
               align_right=True),
        Column("Status", lambda e: e.get("status") or f"skipped: {e.get('reason', '')}"),
    ], parent)


class MonitorPanel(QWidget):
    """Watch a folder with an exported model; see the latest cases, the counts, the drift and the report."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None) -> None:
        """Long on purpose: it builds the widgets and their layout in one place, so that reading it top to bottom is
        reading the panel as it appears."""
        super().__init__(parent)
        self.setObjectName("monitorPanel")
        self.state = state
        self.jobs = JobClient(controller, self)
        self.cases: list[dict[str, Any]] = []         # every entry of this watch, oldest first
        self.heatmaps: dict[int, Any] = {}             # seq -> heat map of the latest cases
        self.familiarity: Familiarity | None = None     # the model's check, from the log's start entry
        self._dirty = False

        self.model_field = QLineEdit(self, placeholderText="an .onnx file exported by desktop_tl")
        self.model_button = QPushButton("Choose…", self)
        self.run_model_button = QPushButton("Current run's model", self)
        self.run_model_button.setToolTip("The model the Export panel wrote for the current run")
        self.folder_field = QLineEdit(self, placeholderText="the folder new images arrive in (searched recursively)")
        self.folder_button = QPushButton("Choose…", self)
        self.log_field = QLineEdit(self, placeholderText="the log (JSON lines): beside the folder by default")
        self.log_button = QPushButton("Choose…", self)
        self.start_button = QPushButton("Start watching", self)
        self.start_button.setObjectName("startWatchButton")
        self.stop_button = QPushButton("Stop", self)
        self.report_button = QPushButton("Report", self)
        self.report_button.setToolTip("Counts and drift from the whole log, and whether its hash chain is intact")
        self.truth_button = QPushButton("With true labels…", self)
        self.truth_button.setToolTip("A CSV of path,label (paths as the log has them) or sha256,label: the realised "
                                     "figures beside what the model's test split promised")
        self.status = QLabel("Not watching.", self, wordWrap=True)
        self.status.setObjectName("monitorStatus")
        self.message = MessageBar(self)

        self.cases_model = cases_model(self)
        self.table = QTableView(self)
        self.table.setObjectName("trialCases")
        self.table.setModel(self.cases_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.heatmap = QLabel("Select a case to see where the model looked.", self, wordWrap=True)
        self.heatmap.setObjectName("trialHeatmap")
        self.heatmap.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.heatmap.setMinimumSize(160, 160)
        self.drift = pg.PlotWidget(self)
        self.drift.setObjectName("driftChart")
        self.drift.setBackground("w")
        self.drift.setLabel("left", "% flagged unfamiliar")
        self.drift.setLabel("bottom", f"images logged (a point per {DRIFT_WINDOW})")
        self.drift.setMinimumHeight(140)
        self.drift_curve = self.drift.plot([], [], pen=pg.mkPen("#c0392b", width=2), symbol="o", symbolSize=5)
        self.expected_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#7f8c8d", style=Qt.PenStyle.DashLine),
                                             label="expected", labelOpts={"position": 0.55, "color": "#555555"})
        self.expected_line.hide()
        self.drift.addItem(self.expected_line)
        self.report = QPlainTextEdit(self, readOnly=True)
        self.report.setObjectName("trialReport")
        self.report.setPlaceholderText("Report and With true labels… show the monitor's report here.")

        form = QFormLayout()
        for label, field, buttons in (("Model", self.model_field, (self.model_button, self.run_model_button)),
                                      ("Folder", self.folder_field, (self.folder_button,)),
                                      ("Log", self.log_field, (self.log_button,))):
            row = QHBoxLayout()
            row.addWidget(field, 1)
            for button in buttons:
                row.addWidget(button)
            form.addRow(label, row)
        controls = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.report_button, self.truth_button):
            controls.addWidget(button)
        controls.addStretch(1)
        side = QSplitter(Qt.Orientation.Vertical, self)
        side.addWidget(self.heatmap)
        side.addWidget(self.drift)
        side.addWidget(self.report)
        body = QSplitter(Qt.Orientation.Horizontal, self)
        body.addWidget(self.table)
        body.addWidget(side)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.message)
        layout.addWidget(body, 1)

        self.refresh = QTimer(self, interval=REFRESH_MS)
        self.refresh.timeout.connect(self._redraw)
        self.model_button.clicked.connect(lambda: self._choose_file(self.model_field, "ONNX model (*.onnx)"))
        self.run_model_button.clicked.connect(lambda: self.use_run_model())
        self.folder_button.clicked.connect(self._choose_folder)
        self.log_button.clicked.connect(lambda: self._choose_file(self.log_field, "Watch log (*.jsonl)", save=True))
        self.folder_field.editingFinished.connect(self._default_log)
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button.clicked.connect(self.stop)
        self.report_button.clicked.connect(lambda: self.show_report())
        self.truth_button.clicked.connect(lambda: self._choose_truth())
        self.table.selectionModel().currentRowChanged.connect(lambda current, _previous: self._show_heatmap())
        self.jobs.sig_event.connect(self._on_event)
        self.jobs.sig_result.connect(self._on_result)
        self.jobs.sig_failed.connect(self._on_failed)
        self.jobs.sig_running.connect(lambda _running: self._update_buttons())
        controller.sig_busy_changed.connect(lambda _busy: self._update_buttons())
        self._update_buttons()

    # -- choices ---------------------------------------------------------------------------------
    def use_run_model(self) -> bool:
        """Take the current run's exported model; False (and why) when there is none."""
        model = RunFolder(self.state.run_dir).exported_model() if self.state.run_dir else None
        if model is None:
            self.message.show_error("The current run has no exported model.",
                                    "Export it in the Export panel, or choose an .onnx file.",
                                    until=self.state.sig_export_changed)
            return False
        self.model_field.setText(str(model))
        return True

    def _choose_file(self, field: QLineEdit, kinds: str, save: bool = False) -> None:
        start = field.text() or str(Path.home())
        chosen, _ = (QFileDialog.getSaveFileName(self, "Choose the watch log", start, kinds,
                                                 options=QFileDialog.Option.DontConfirmOverwrite) if save
                     else QFileDialog.getOpenFileName(self, "Choose the model", start, kinds))
        if chosen:
            field.setText(chosen)

    def _choose_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Choose the folder new images arrive in",
                                                  self.folder_field.text() or str(Path.home()))
        if chosen:
            self.folder_field.setText(chosen)
            self._default_log()

    def _default_log(self) -> None:
        folder = self.folder_field.text().strip()
        if folder and not self.log_field.text().strip():
            self.log_field.setText(str(Path(folder).with_name(f"{Path(folder).name}.trial.jsonl")))

    # -- watching --------------------------------------------------------------------------------
    @property
    def watching(self) -> bool:
        """True while the watch runs."""
        return self.jobs.active == WATCH_JOB

    def start(self) -> bool:
        """Start the watch on the worker; False (and why) when it cannot start."""
        self._default_log()
        model, folder, log = (Path(f.text().strip()) if f.text().strip() else None
                              for f in (self.model_field, self.folder_field, self.log_field))
        if model is None or folder is None or log is None:
            self.message.show_error("Choose the model, the folder and the log first.",
                                    "The model is an exported .onnx file; the log is created when missing.")
            return False
        if not self.jobs.submit(WATCH_JOB, watch_job(model, folder, log)):
            self.message.show_note(BUSY_MESSAGE)
            return False
        self.message.clear_message()
        self.cases, self.heatmaps, self.familiarity = [], {}, None
        self._dirty = True
        self.status.setText(f"Watching {folder.name}…")
        self.refresh.start()
        return True

    @Slot()
    def stop(self) -> None:
        """Stop the watch (it finishes the batch it is classifying and writes its stop entry)."""
        if self.watching:
            self.jobs.cancel()
            self.status.setText("Stopping…")

    @Slot(object)
    def _on_event(self, event: object) -> None:
        if not isinstance(event, TrialLogged):
            return
        entry = event.entry
        if entry.get("kind") == "start":
            self.familiarity = Familiarity.from_dict(entry.get("familiarity"))
            return
        if entry.get("kind") not in ("image", "skipped"):
            return
        self.cases.append(entry)
        if event.heatmap is not None:
            self.heatmaps[entry["seq"]] = event.heatmap
            for old in sorted(self.heatmaps)[:-KEPT_HEATMAPS]:
                del self.heatmaps[old]
        self._dirty = True

    def _redraw(self) -> None:
        """The table (newest first, the selection kept), the counts and the drift chart, when entries came."""
        if not self._dirty:
            return
        self._dirty = False
        selected = self._selected()
        self.cases_model.set_rows(self.cases[::-1][:SHOWN_CASES])
        if selected is not None:
            rows = [e.get("seq") for e in self.cases_model.rows]
            if selected.get("seq") in rows:
                row = rows.index(selected.get("seq"))
                self.table.setCurrentIndex(self.cases_model.index(row, 0))
                self.table.selectRow(row)
        images = [e for e in self.cases if e.get("kind") == "image"]
        counts = {s: sum(1 for e in images if e.get("status") == s) for s in STATUSES}
        skipped = len(self.cases) - len(images)
        where = "Watching" if self.watching else "Watched"
        self.status.setText(f"{where}: {counted(len(images), 'image')} logged (" + ", ".join(
            f"{n} {s}" for s, n in counts.items()) + f"), {counted(skipped, 'unreadable file')} skipped.")
        windows = counts_over_time(images, DRIFT_WINDOW, self.familiarity)
        shares = [100 * (w["unfamiliar"]["value"] or 0.0) for w in windows]
        self.drift_curve.setData([min((k + 1) * DRIFT_WINDOW, len(images)) for k in range(len(shares))], shares)
        if self.familiarity is not None:
            self.expected_line.setValue(100 * self.familiarity.flagged_share)
            self.expected_line.label.setFormat(f"expected on the training kind: {self.familiarity.flagged_share:.0%}")
            self.expected_line.show()
        alarms = sum(w["drift_alarm"] for w in windows)
        self.drift.setTitle(f"Drift alarm in {alarms} of {len(windows)} windows" if alarms else None)

    def _selected(self) -> dict[str, Any] | None:
        index = self.table.currentIndex()
        return self.cases_model.rows[index.row()] if index.isValid() else None

    def _show_heatmap(self) -> None:
        entry = self._selected()
        picture = self.heatmaps.get(entry.get("seq")) if entry else None
        if picture is None:
            self.heatmap.setPixmap(QPixmap())
            self.heatmap.setText("No heat map for this case (an earlier session's, a skipped file, or a model "
                                 "without them)." if entry else "Select a case to see where the model looked.")
            return
        from PIL.ImageQt import ImageQt

        self.heatmap.setPixmap(QPixmap.fromImage(ImageQt(picture.convert("RGBA"))))
        self.heatmap.setToolTip(f"{entry['path']}: where the model looked for {entry.get('label')!r}")

    # -- report ----------------------------------------------------------------------------------
    def show_report(self, truth: Path | None = None) -> bool:
        """The monitor's report of the log (with the true labels in `truth`), on the worker."""
        log = self.log_field.text().strip()
        if not log:
            self.message.show_error("Choose the watch log first.", "It is the file the watch writes to.")
            return False
        if self.watching:
            self.message.show_note("Stop the watch first: the worker is watching. Starting again goes on where it "
                                   "stopped, logging no image twice.")
            return False
        if not self.jobs.submit(TRIAL_REPORT_JOB, trial_report_job(Path(log), truth)):
            self.message.show_note(BUSY_MESSAGE)
            return False
        return True

    def _choose_truth(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "The true labels (path,label or sha256,label)",
                                                self.log_field.text() or str(Path.home()), "CSV (*.csv *.txt)")
        if chosen:
            self.show_report(Path(chosen))

    @Slot(str, object)
    def _on_result(self, kind: str, result: object) -> None:
        if kind == TRIAL_REPORT_JOB:
            assert isinstance(result, dict)
            self.report.setPlainText(monitor_text(result))
            self.state.set_trial_report(result)
            self.message.show_note("The Evaluation panel's HTML report now includes this trial.")
            return
        self.refresh.stop()
        self._dirty = True
        self._redraw()
        self.status.setText("Stopped. " + self.status.text() + " The log holds every one of them.")

    @Slot(str, object)
    def _on_failed(self, kind: str, failure: Failed) -> None:
        if kind == WATCH_JOB:
            self.refresh.stop()
            self.status.setText("Not watching.")
        self.message.show_failure(failure)

    def _update_buttons(self) -> None:
        watching, busy = self.watching, self.jobs.controller.busy
        for widget in (self.start_button, self.model_button, self.run_model_button, self.folder_button,
                       self.log_button, self.model_field, self.folder_field, self.log_field):
            widget.setEnabled(not busy)
        self.stop_button.setEnabled(watching)
        for button in (self.report_button, self.truth_button):
            button.setEnabled(not busy)


if __name__ == "__main__":      # a preview: python -m desktop_tl.gui.monitor.monitor_panel
    import sys

    sys.exit(preview_panel(MonitorPanel, 1000, 700))
