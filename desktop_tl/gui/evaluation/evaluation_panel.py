"""Evaluation panel: a run's validation or test figures, confusion matrix and mistakes.

It shows `state.metrics` (metrics.json of the current run, announced by `sig_metrics_changed`);
"Evaluate" recomputes them with `core.evaluation.splits.evaluate_run` on the worker and
publishes the result through `state.set_metrics`. Tabs: confusion and mistakes (tables in `evaluation_tables`),
operating point, calibration, subgroups; buttons for the HTML report and the label review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.decision import held_out_name
from desktop_tl.core.errors import UserError
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.gui.evaluation.evaluation_jobs import (
    Evaluation,
    ImageRoots,
    evaluate_job,
    heatmap_job,
    report_job,
    review_job,
)
from desktop_tl.gui.evaluation.evaluation_tables import (
    all_mistakes_note,
    cell_mistakes,
    mistake_item,
    per_class_model,
    per_class_rows,
    summary_text,
)
from desktop_tl.gui.evaluation.operating_point_view import OperatingPointView
from desktop_tl.gui.evaluation.referral_view import ReferralView
from desktop_tl.gui.evaluation.reliability_view import ReliabilityView
from desktop_tl.gui.evaluation.result_views import confusion_matrix_view, mistake_gallery, per_class_view, titled
from desktop_tl.gui.evaluation.subgroup_view import SubgroupView
from desktop_tl.gui.state import AppState
from desktop_tl.gui.widgets.image_viewer import ImageViewer
from desktop_tl.gui.widgets.item_models import ImageListModel, MatrixModel
from desktop_tl.gui.widgets.panel_support import BUSY_MESSAGE, JobClient, JobProgress, MessageBar, preview_panel
from desktop_tl.gui.widgets.thumbnails import ThumbnailCache
from desktop_tl.gui.worker import EngineController

EVALUATE_JOB = "evaluate"
REPORT_JOB = "report"
REVIEW_JOB = "review-labels"
HEATMAP_JOB = "heatmaps"
REPORT_FILE = "report.html"       # core.evaluation.report.REPORT_FILE, without importing the engine here
SPLITS = (("val", "Validation"), ("test", "Test"))


class EvaluationPanel(QWidget):
    """Figures, cautions, confusion matrix, per-class table and a gallery of mistakes."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None) -> None:
        """Long on purpose: it builds the widgets and their layout in one place, so that reading it top to bottom is
        reading the panel as it appears."""
        super().__init__(parent)
        self.setObjectName("evaluationPanel")
        self.state = state
        self.jobs = JobClient(controller, self)
        self.thumbnails = ThumbnailCache(parent=self)
        self.metrics: dict[str, Any] | None = None
        self._roots = ImageRoots()
        self.cell: tuple[int, int] | None = None
        self._then_say = ""                 # a note to show once the evaluation running now has finished

        self.split_box = QComboBox(self)
        self.split_box.setObjectName("evaluationSplit")
        for key, name in SPLITS:
            self.split_box.addItem(name, key)
        self.split_box.setCurrentIndex(1)
        self.review_button = QPushButton("Review labels…", self)
        self.review_button.setObjectName("reviewLabelsButton")
        self.review_button.setToolTip("List training and validation images whose label looks wrong, and correct "
                                      "them into a labels CSV (your files are not moved).")
        self.evaluate_button = QPushButton("Evaluate", self)
        self.evaluate_button.setObjectName("evaluateButton")
        self.evaluate_button.setToolTip("Evaluate the run's best checkpoint again on its validation and test images.")
        self.progress = JobProgress(self.jobs, self, cancellable=())
        self.message = MessageBar(self)
        self.summary = QLabel("No results yet: train a run or open one.", self)
        self.summary.setObjectName("evaluationSummary")
        self.summary.setWordWrap(True)
        self.cautions = QLabel(self)
        self.cautions.setObjectName("evaluationCautions")
        self.cautions.setWordWrap(True)
        self.cautions.hide()

        self.matrix_model = MatrixModel(self)
        self.matrix = confusion_matrix_view(self.matrix_model, self)
        self.class_model = per_class_model(self)
        self.class_table = per_class_view(self.class_model, self)

        self.gallery_note = QLabel(self)
        self.gallery_note.setObjectName("galleryNote")
        self.gallery_note.setWordWrap(True)
        self.heatmaps: dict[str, Any] = {}        # mistake path -> heat map from the run's exported model
        self.heatmap_box = QCheckBox("Where it looked", self)
        self.heatmap_box.setToolTip("Show each mistake with a heat map of where the exported model looked for the "
                                    "class it chose (export the run first).")
        self.show_all_button = QPushButton("Show all mistakes", self)
        self.show_all_button.setEnabled(False)
        self.gallery_model = ImageListModel(self.thumbnails, self)
        self.gallery = mistake_gallery(self.gallery_model, self.thumbnails.size, self)

        top = QHBoxLayout()
        top.addWidget(QLabel("Split", self))
        top.addWidget(self.split_box)
        top.addStretch(1)
        top.addWidget(self.review_button)
        top.addWidget(self.evaluate_button)
        left = QSplitter(Qt.Orientation.Vertical, self)
        left.addWidget(titled("Confusion matrix (rows: true, columns: predicted)", self.matrix, self))
        left.addWidget(titled("Per class", self.class_table, self))
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        gallery_row = QHBoxLayout()           # below the note, so that the gallery side stays narrow
        gallery_row.addWidget(self.heatmap_box)
        gallery_row.addStretch(1)
        gallery_row.addWidget(self.show_all_button)
        right_layout.addWidget(self.gallery_note)
        right_layout.addLayout(gallery_row)
        right_layout.addWidget(self.gallery, 1)
        mistakes = QSplitter(Qt.Orientation.Horizontal, self)
        mistakes.addWidget(left)
        mistakes.addWidget(right)
        self.operating_point = OperatingPointView(self)
        self.reliability = ReliabilityView(self)
        self.referral = ReferralView(self)
        self.subgroups = SubgroupView(self)
        body = QTabWidget(self)
        body.setObjectName("evaluationTabs")
        body.addTab(mistakes, "Confusion and mistakes")
        body.addTab(self.operating_point, "Operating point")
        body.addTab(self.reliability, "Calibration")
        body.addTab(self.referral, "Referral")
        body.addTab(self.subgroups, "Subgroups")
        self.tabs = body
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.summary)
        layout.addWidget(self.cautions)
        layout.addWidget(body, 1)

        self.split_box.currentIndexChanged.connect(lambda _: self._show_split())
        self.matrix.clicked.connect(self._on_cell_clicked)
        self.show_all_button.clicked.connect(lambda: self.show_all_mistakes())
        self.evaluate_button.clicked.connect(lambda: self.evaluate())
        self.review_button.clicked.connect(lambda: self.review_labels())
        self.heatmap_box.toggled.connect(self._on_heatmaps_toggled)
        self.gallery.doubleClicked.connect(self.show_large)
        self.operating_point.sig_saved.connect(self._show_under_saved_threshold)
        self.referral.sig_saved.connect(lambda words: self.evaluate(
            f"Saved with the run. {words} Export the run again so that predict and Try it use it."))
        self.jobs.sig_result.connect(self._on_result)
        self.jobs.sig_failed.connect(lambda _kind, failure: self.message.show_failure(failure))
        self.jobs.sig_running.connect(lambda running: self._update_button())
        state.sig_metrics_changed.connect(self.show_metrics)
        state.sig_run_changed.connect(lambda _: self._update_button())
        self._update_button()
        if state.metrics is not None:
            self.show_metrics(state.metrics)

    # -- state ------------------------------------------------------------------------------------

    @property
    def split(self) -> str:
        """The split shown: "val" or "test"."""
        return self.split_box.currentData()

    def set_split(self, split: str) -> None:
        """Show the "val" or "test" figures."""
        self.split_box.setCurrentIndex(next(i for i, (key, _) in enumerate(SPLITS) if key == split))

    @Slot(object)
    def show_metrics(self, metrics: dict[str, Any] | None) -> None:
        """Show a metrics dict (metrics.json content), or nothing."""
        self.metrics = metrics
        held_out = held_out_name((metrics or {}).get("val_source", "validation"), short=True)
        self.split_box.setItemText(0, held_out[:1].upper() + held_out[1:])
        self.heatmaps = {}
        self.heatmap_box.setChecked(False)
        self.thumbnails.clear()
        cautions = (metrics or {}).get("cautions") or []
        self.cautions.setText("\n".join(f"⚠ {c}" for c in cautions))
        self.cautions.setVisible(bool(cautions))
        self.operating_point.show_metrics(metrics, self.state.run_dir)
        self.referral.run_dir = self.state.run_dir
        self.subgroups.show_metrics(metrics)
        self._show_split()

    def _split_metrics(self) -> dict[str, Any] | None:
        return (self.metrics or {}).get(self.split)

    def _show_split(self) -> None:
        metrics, m = self.metrics, self._split_metrics()
        name = self.split_box.currentText()
        if metrics is None:
            self.summary.setText("No results yet: train a run or open one.")
            self.matrix_model.set_matrix([], [])
            self.class_model.set_rows([])
            self._set_gallery([], "")
            return
        classes = list(metrics.get("classes") or [])
        self.summary.setText(summary_text(name, m))
        self.reliability.show_split(metrics, self.split)
        self.referral.show_split(metrics, self.split)
        if not m:
            self.matrix_model.set_matrix([], [])
            self.class_model.set_rows([])
            self._set_gallery([], f"The results hold no {name.lower()} figures.")
            return
        self.matrix_model.set_matrix(classes, m.get("confusion_matrix") or [])
        self.class_model.set_rows(per_class_rows(m, classes))
        self.show_all_mistakes()

    def _image_root(self) -> Path | None:
        """Where the metrics' relative image paths live: the run's dataset, else the current one."""
        current = self.state.dataset.root if self.state.dataset is not None else None
        return self._roots.root(self.state.run_dir, current)

    # -- gallery ----------------------------------------------------------------------------------

    def _set_gallery(self, mistakes: list[dict[str, Any]], note: str) -> None:
        root = self._image_root() if mistakes else None
        shown = self.heatmaps if self.heatmap_box.isChecked() else {}
        self.gallery_model.set_items([mistake_item(root, m, shown.get(m["path"])) for m in mistakes])
        self.gallery_note.setText(note)

    @Slot()
    def show_all_mistakes(self) -> None:
        """Fill the gallery with every stored mistake of the split."""
        self.cell = None
        self.matrix.clearSelection()
        self.show_all_button.setEnabled(False)
        m = self._split_metrics() or {}
        self._set_gallery(list(m.get("misclassified") or []), all_mistakes_note(m))

    def select_cell(self, true_row: int, predicted_column: int) -> None:
        """Show the images of one (true, predicted) cell of the confusion matrix."""
        m = self._split_metrics()
        if not m or not self.matrix_model.classes:
            return
        self.cell = (true_row, predicted_column)
        self.matrix.setCurrentIndex(self.matrix_model.index(true_row, predicted_column))
        self.show_all_button.setEnabled(True)
        self._set_gallery(*cell_mistakes(m, self.matrix_model.classes, true_row, predicted_column))

    @Slot(QModelIndex)
    def _on_cell_clicked(self, index: QModelIndex) -> None:
        self.select_cell(index.row(), index.column())

    # -- evaluate ---------------------------------------------------------------------------------

    def _update_button(self) -> None:
        for button in (self.evaluate_button, self.review_button):
            button.setEnabled(self.state.run_dir is not None and not self.jobs.running)

    @Slot()
    def export_report(self, path: Path | None = None) -> bool:
        """Write the current run's HTML report (asking where unless `path` is given), on the worker."""
        run_dir = self.state.run_dir
        if run_dir is None:
            self.message.show_error("There is no run to report on.", "Train a run or open a project first.")
            return False
        if path is None:
            chosen, _ = QFileDialog.getSaveFileName(self, "Export report", str(Path(run_dir) / REPORT_FILE),
                                                    "HTML report (*.html)")
            if not chosen:
                return False
            path = Path(chosen)
        return self.jobs.submit(REPORT_JOB, report_job(run_dir, path, self.state.trial_report))

    def _on_heatmaps_toggled(self, on: bool) -> None:
        if on and not self.heatmaps:
            self.show_heatmaps()
        else:
            self._show_split()

    def show_heatmaps(self) -> bool:
        """Compute heat maps of the stored mistakes with the exported model, on the worker."""
        model = RunFolder(self.state.run_dir).exported_model() if self.state.run_dir else None
        root, metrics = self._image_root(), self.metrics or {}
        if model is None or root is None:
            self.message.show_note("Export the run first (Export panel): the heat maps come from the exported "
                                   "model, the same as Try it and predict show.", until=self.state.sig_export_changed)
            self.heatmap_box.setChecked(False)
            return False
        paths = sorted({m["path"] for split in ("val", "test") for m in (metrics.get(split) or {}).get(
            "misclassified") or []})
        return self.jobs.submit(HEATMAP_JOB, heatmap_job(model, root, paths))

    def show_large(self, index: QModelIndex) -> None:
        """Open a mistake (or its heat map) larger, with its caption (double-click in the gallery)."""
        item = self.gallery_model.items[index.row()]
        self.viewer = ImageViewer(item.path, item.tooltip, item.picture, self)
        self.viewer.show()

    def review_labels(self) -> bool:
        """Find suspected label errors of the current run on the worker, then open the review grid."""
        run_dir = self.state.run_dir
        if run_dir is None:
            self.message.show_error("There is no run whose labels to review.", "Train a run or open a project first.")
            return False
        return self.jobs.submit(REVIEW_JOB, review_job(run_dir))

    def _open_review(self, result) -> None:
        from desktop_tl.gui.evaluation.label_review_dialog import LabelReviewDialog  # loads the engine: only when asked

        run_dir, index, suspects = result
        if not suspects:
            self.message.show_note("No suspected label errors: a model that never saw each image agrees with its "
                                   "label.")
            return
        self.review = LabelReviewDialog(run_dir, index, suspects, self)
        self.review.open()

    @Slot(object)
    def _show_under_saved_threshold(self, _decision: object) -> None:
        """The figures under the saved threshold: from the stored scores, else by evaluating again (older runs)."""
        from desktop_tl.core.evaluation.rethreshold import metrics_under_decision

        run_dir = self.state.run_dir
        try:
            metrics = metrics_under_decision(Path(run_dir)) if run_dir is not None else None
        except UserError as exc:
            self.message.show_error(exc.what, exc.hint)
            return
        if metrics is None:
            self.evaluate()
            return
        self.state.set_metrics(metrics)
        self.message.show_note("The figures under the saved threshold, from the stored validation and test scores. "
                               "Export the run again so that predict and Try it use it.")

    def evaluate(self, then_say: str = "") -> bool:
        """Evaluate the current run on the worker, then say `then_say`; False without a run or when busy."""
        run_dir = self.state.run_dir
        if run_dir is None:
            self.message.show_note("Open or train a run first.")
            return False
        if not self.jobs.submit(EVALUATE_JOB, evaluate_job(Path(run_dir))):
            self.message.show_note(BUSY_MESSAGE)
            return False
        self.message.show_note(f"Evaluating {Path(run_dir).name}…")
        self._then_say = then_say
        return True

    @Slot(str, object)
    def _on_result(self, kind: str, result: object) -> None:
        if kind == HEATMAP_JOB:
            self.heatmaps = dict(result)
            self._show_split()
            return
        if kind == REVIEW_JOB:
            self._open_review(result)
            return
        if kind == REPORT_JOB:
            self.message.show_note(f"Report written: {Path(result).name} (open it in a web browser).")
            return
        assert isinstance(result, Evaluation)
        self.message.show_note(self._then_say)          # an empty note clears the bar
        self._roots.remember(result.run_dir, result.image_root)
        if self.state.run_dir is not None and Path(self.state.run_dir) == result.run_dir:
            self.state.set_metrics(result.metrics)

    def closeEvent(self, event) -> None:
        """Stop thumbnail decoding when the panel closes."""
        self.thumbnails.shutdown()
        super().closeEvent(event)


if __name__ == "__main__":      # a preview: python -m desktop_tl.gui.evaluation.evaluation_panel RUN_DIR
    import sys

    def _open_run(_panel: EvaluationPanel, state: AppState, args: list[str]) -> None:
        if args:
            state.set_run(Path(args[0]))
            state.set_metrics(RunFolder(args[0]).metrics())

    sys.exit(preview_panel(EvaluationPanel, 1000, 700, _open_run))
