"""Export panel: write the current run as one ONNX file, check it, and try it on images.

Export is `core.deploy.export.export_onnx` on the worker; its `ExportResult` goes to
`state.set_export` and is shown here (parity with PyTorch, file, size, metadata).
"Try it" classifies dropped or chosen images with `core.deploy.predict.OnnxClassifier`, also on the worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData, QSize, Qt, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.decision import STATUS_RULES_KEY, Calibration, Decision, Familiarity, Referral
from desktop_tl.core.deploy.predict import Prediction, describe_decision
from desktop_tl.core.errors import Cancelled
from desktop_tl.core.events import Failed
from desktop_tl.core.reporting import counted, file_size
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.gui.state import AppState
from desktop_tl.gui.widgets.item_models import Column, ImageItem, ImageListModel, RecordTableModel
from desktop_tl.gui.widgets.panel_support import BUSY_MESSAGE, JobClient, JobProgress, MessageBar, preview_panel
from desktop_tl.gui.widgets.thumbnails import ThumbnailCache
from desktop_tl.gui.worker import EngineController, JobContext

if TYPE_CHECKING:      # core.deploy.export imports torch; the panel loads it only when exporting
    from desktop_tl.core.deploy.export import ExportResult

EXPORT_JOB = "export"
PREDICT_JOB = "predict"
MAX_HEATMAPS = 300      # "Try it" shows where the model looked for up to this many images at once


def export_job(run_dir: Path, out: Path) -> Callable[[JobContext], ExportResult]:
    """A worker job that exports the run's best checkpoint to `out` and checks parity."""
    def run(ctx: JobContext) -> ExportResult:
        from desktop_tl.core.deploy.export import export_onnx

        return export_onnx(run_dir, out)
    return run


def predict_job(model_file: Path, paths: Sequence[Path]) -> Callable[[JobContext], list[Prediction]]:
    """A worker job that classifies images (files or folders) with an exported model, in order."""
    def run(ctx: JobContext) -> list[Prediction]:
        from desktop_tl.core.deploy.predict import OnnxClassifier, collect_inputs

        inputs = collect_inputs(paths)
        classifier = OnnxClassifier(model_file, threads=2)
        ctx.progress(0, len(inputs))
        predictions: list[Prediction] = []
        heatmaps = classifier.has_heatmaps and len(inputs) <= MAX_HEATMAPS
        for prediction in classifier.predict_files(inputs, batch_size=8, heatmaps=heatmaps):
            if ctx.should_stop():
                raise Cancelled()
            predictions.append(prediction)
            ctx.progress(len(predictions), len(inputs))
        return predictions
    return run


def read_export(run_dir: Path) -> ExportResult | None:
    """The run's last export as recorded in its export.json, or None (absent or unreadable)."""
    from desktop_tl.core.deploy.export import ExportResult

    record = RunFolder(run_dir).export_record()
    try:
        return ExportResult(**record) if record is not None else None
    except TypeError:
        return None


def parity_text(result: ExportResult) -> str:
    """The parity check in words: OK or FAILED, with the largest differences."""
    diffs = result.parity_max_abs_diff
    detail = (f"largest difference in probabilities {diffs.get('batch_1', float('nan')):.2g} for 1 image, "
              f"{diffs.get('batch_7', float('nan')):.2g} for 7 images")
    if result.parity_ok:
        return f"Parity with PyTorch: OK ({detail})."
    return (f"Parity with PyTorch: FAILED ({detail}). The exported model does not give the same answers; "
            "do not use it, and report this.")


def metadata_rows(metadata: dict[str, str]) -> list[tuple[str, str]]:
    """Metadata entries, JSON values shown compactly."""
    rows = []
    for key, value in metadata.items():
        try:
            shown = json.dumps(json.loads(value), separators=(", ", ": "))
        except (TypeError, ValueError):
            shown = value
        rows.append((key, shown))
    return rows


STATUS_TONES = {"uncertain": "#fff1c2", "unfamiliar": "#dcdcdc"}   # amber and grey: refer to a person


def prediction_item(prediction: Prediction) -> ImageItem:
    """A result list entry: thumbnail, file name, label and probability, and the status when the model refers
    the image to a person (or why it failed)."""
    path = Path(prediction.path)
    if prediction.error:
        return ImageItem(path, f"{path.name}\ncannot be read: {prediction.error}", prediction.path)
    top = sorted(prediction.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:3]
    looked = (f"\nColours: where the model looked for {prediction.label!r} (red: most)."
              if prediction.heatmap is not None else "")
    caption = f"{path.name}\n{prediction.label} ({prediction.probability:.1%})"
    status = ""
    if prediction.status == "uncertain":
        caption += "\nRefer: uncertain"
        status = "\nUncertain: the model is not sure enough to answer; refer the image to a person."
    elif prediction.status == "unfamiliar":
        caption = f"{path.name}\nRefer: unfamiliar image\n(nearest: {prediction.label})"
        status = ("\nUnfamiliar: this image is unlike the images the model was trained on, so its answer means "
                  "little; refer it to a person.")
    named = prediction.sets.get("0.9")
    if named and len(named) > 1 and prediction.status != "unfamiliar":
        caption += f"\nor: {', '.join(named[1:])}"
    sets = (f"\nPrediction set (holds the true class 9 times in 10): {', '.join(named)}." if named else "")
    return ImageItem(path, caption,
                     f"{prediction.path}\n" + ", ".join(f"{c} {p:.1%}" for c, p in top) + status + sets + looked,
                     prediction.heatmap, STATUS_TONES.get(prediction.status or ""))


def status_summary(predictions: Sequence[Prediction]) -> str:
    """How many images were classified, answered and referred (and could not be read)."""
    read = [p for p in predictions if not p.error]
    if predictions and not read:
        return ("The image could not be read." if len(predictions) == 1 else
                f"None of the {len(predictions)} images could be read.")
    counts = {s: sum(1 for p in read if p.status == s) for s in ("answered", "uncertain", "unfamiliar")}
    text = f"{counted(len(read), 'image')} classified"
    if counts["uncertain"] or counts["unfamiliar"]:
        referred = [f"{counts[s]} {s}" for s in ("uncertain", "unfamiliar") if counts[s]]
        text += f": {counts['answered']} answered, " + " and ".join(referred) + " (refer those to a person)"
    failed = len(predictions) - len(read)
    return text + (f"; {failed} could not be read." if failed else ".")


def _decision_text(result: ExportResult) -> str:
    """The exported model's decision rule and calibration in words (the rules `predict` applies)."""
    try:
        classes = json.loads(result.metadata.get("classes", "[]"))
    except ValueError:
        classes = []
    referral = Referral.from_json(result.metadata.get("referral"))
    familiarity = Familiarity.from_json(result.metadata.get("familiarity"))
    return describe_decision(Decision.from_json(result.metadata.get("decision"), classes),
                             Calibration.from_json(result.metadata.get("calibration")), referral, familiarity,
                             status_rule=STATUS_RULES_KEY in result.metadata)


def local_files(mime: QMimeData) -> list[Path]:
    """Local files and folders among dropped URLs."""
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()] if mime.hasUrls() else []


class ExportPanel(QWidget):
    """Export to ONNX, show the check, and classify images with the exported file."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None) -> None:
        """Long on purpose: it builds the widgets and their layout in one place, so that reading it top to bottom is
        reading the panel as it appears."""
        super().__init__(parent)
        self.setObjectName("exportPanel")
        self.setAcceptDrops(True)
        self.state = state
        self.jobs = JobClient(controller, self)
        self.thumbnails = ThumbnailCache(parent=self)
        self.model_file: Path | None = None

        self.export_button = QPushButton("Export to ONNX…", self)
        self.export_button.setObjectName("exportButton")
        self.export_button.setToolTip("Write the run's best model as one .onnx file that runs without PyTorch.")
        self.progress = JobProgress(self.jobs, self, cancellable={PREDICT_JOB})
        self.message = MessageBar(self)
        self.parity = QLabel(self)
        self.parity.setObjectName("parityLabel")
        self.parity.setWordWrap(True)
        self.file_label = QLabel("—", self)
        self.file_label.setObjectName("exportFile")
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file_label.setWordWrap(True)
        self.size_label = QLabel("—", self)
        self.metadata_model: RecordTableModel[tuple[str, str]] = RecordTableModel(
            [Column("Key", lambda r: r[0]), Column("Value", lambda r: r[1], tooltip=lambda r: r[1])], self)
        self.metadata_table = QTableView(self)
        self.metadata_table.setObjectName("metadataTable")
        self.metadata_table.setModel(self.metadata_model)
        self.metadata_table.verticalHeader().hide()
        self.metadata_table.horizontalHeader().setStretchLastSection(True)
        self.metadata_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)

        self.try_button = QPushButton("Choose images…", self)
        self.try_button.setObjectName("tryButton")
        self.try_hint = QLabel("Export first; then drop images or folders here to classify them.", self)
        self.try_hint.setWordWrap(True)
        self.results_model = ImageListModel(self.thumbnails, self)
        self.results = QListView(self)
        self.results.setObjectName("predictionList")
        side = self.thumbnails.size // 2
        self.results.setIconSize(QSize(side, side))
        self.results.setUniformItemSizes(True)
        self.results.setModel(self.results_model)

        result_box = QGroupBox("Exported model", self)
        form = QFormLayout(result_box)
        form.addRow(self.parity)
        form.addRow("File", self.file_label)
        form.addRow("Size", self.size_label)
        form.addRow(self.metadata_table)
        try_box = QGroupBox("Try it", self)
        try_layout = QVBoxLayout(try_box)
        try_row = QHBoxLayout()
        try_row.addWidget(self.try_hint, 1)
        try_row.addWidget(self.try_button)
        try_layout.addLayout(try_row)
        try_layout.addWidget(self.results, 1)
        top = QHBoxLayout()
        top.addWidget(self.export_button)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(result_box, 1)
        layout.addWidget(try_box, 1)

        self.export_button.clicked.connect(lambda: self.export())
        self.try_button.clicked.connect(lambda: self.choose_images())
        self.jobs.sig_result.connect(self._on_result)
        self.jobs.sig_failed.connect(self._on_failed)
        self.jobs.sig_running.connect(lambda _: self._update_buttons())
        state.sig_run_changed.connect(self._on_run_changed)
        state.sig_export_changed.connect(self.show_export)
        self.show_export(state.export)

    # -- export -----------------------------------------------------------------------------------

    @Slot()
    def export(self) -> bool:
        """Ask where to write the ONNX file (default: run folder/model.onnx) and export on the worker."""
        run_dir = self.state.run_dir
        if run_dir is None:
            self.message.show_note("Train a run or open one first; the export uses its best checkpoint.")
            return False
        name, _ = QFileDialog.getSaveFileName(self, "Export to ONNX", str(RunFolder(Path(run_dir)).model_file),
                                              "ONNX models (*.onnx)")
        if not name:
            return False
        out = Path(name) if Path(name).suffix.lower() == ".onnx" else Path(name + ".onnx")
        if not self.jobs.submit(EXPORT_JOB, export_job(Path(run_dir), out)):
            self.message.show_note(BUSY_MESSAGE)
            return False
        self.message.show_note(f"Exporting to {out.name} and checking it against PyTorch…")
        return True

    @Slot(object)
    def show_export(self, result: ExportResult | None) -> None:
        """Show an ExportResult (or nothing)."""
        if result is None:
            self.model_file = None
            self.parity.setText("Not exported yet.")
            self.parity.setStyleSheet("")
            self.file_label.setText("—")
            self.size_label.setText("—")
            self.metadata_model.set_rows([])
        else:
            where = RunFolder(self.state.run_dir).exported_file(result.onnx_file) if self.state.run_dir else None
            self.model_file = where if where is not None and where.is_file() else None
            self.parity.setText(parity_text(result))
            self.parity.setStyleSheet("" if result.parity_ok else "color: #b00020; font-weight: bold;")
            self.file_label.setText(str(where or result.onnx_file) + ("" if self.model_file else
                                                                       " (not found: export again)"))
            self.size_label.setText(f"{file_size(result.size_bytes)} (ONNX opset {result.opset})")
            self.metadata_model.set_rows(metadata_rows(result.metadata))
        self.try_hint.setText("Drop images or folders here, or choose them, to classify them with the exported "
                              "model. " + _decision_text(result) if self.model_file else
                              "Export first; then drop images or folders here to classify them.")
        self._update_buttons()

    @Slot(object)
    def _on_run_changed(self, run_dir: Path | None) -> None:
        """Another run became current: show its earlier export (export.json), or none."""
        self.results_model.set_items([])
        self.state.set_export(read_export(run_dir) if run_dir is not None else None)

    def _update_buttons(self) -> None:
        idle = not self.jobs.running
        self.export_button.setEnabled(idle and self.state.run_dir is not None)
        self.try_button.setEnabled(idle and self.model_file is not None)

    # -- try it -----------------------------------------------------------------------------------

    @Slot()
    def choose_images(self) -> None:
        """Pick image files to classify."""
        names, _ = QFileDialog.getOpenFileNames(self, "Choose images to classify", str(Path.home()),
                                                "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.gif *.dcm);;"
                                                "All files (*)")
        if names:
            self.classify([Path(n) for n in names])

    def classify(self, paths: Sequence[Path]) -> bool:
        """Classify files or folders with the exported model on the worker."""
        if self.model_file is None:
            self.message.show_note("Export the model first; the images are classified with the exported file.")
            return False
        if not self.jobs.submit(PREDICT_JOB, predict_job(self.model_file, list(paths))):
            self.message.show_note(BUSY_MESSAGE)
            return False
        self.message.clear_message()
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accept dropped local files or folders once a model is exported."""
        if self.model_file is not None and local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        """Keep accepting while the drag moves over the panel."""
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        """Classify the dropped files and folders."""
        paths = local_files(event.mimeData())
        if paths and self.classify(paths):
            event.acceptProposedAction()
        else:
            event.ignore()

    # -- results ----------------------------------------------------------------------------------

    @Slot(str, object)
    def _on_result(self, kind: str, result: object) -> None:
        if kind == EXPORT_JOB:
            self.message.clear_message()
            self.state.set_export(result)
        elif kind == PREDICT_JOB:
            predictions: list[Prediction] = list(result)  # type: ignore[arg-type]
            self.results_model.set_items([prediction_item(p) for p in predictions])
            self.message.show_note(status_summary(predictions))

    @Slot(str, object)
    def _on_failed(self, kind: str, failure: Failed) -> None:
        if failure.cancelled:
            self.message.show_note("Classification stopped.")
        else:
            self.message.show_failure(failure)

    def closeEvent(self, event) -> None:
        """Stop thumbnail decoding when the panel closes."""
        self.thumbnails.shutdown()
        super().closeEvent(event)


if __name__ == "__main__":      # a preview: python -m desktop_tl.gui.export.export_panel RUN_DIR
    import sys

    def _open_run(_panel: ExportPanel, state: AppState, args: list[str]) -> None:
        if args:
            state.set_run(Path(args[0]))

    sys.exit(preview_panel(ExportPanel, 800, 700, _open_run))
