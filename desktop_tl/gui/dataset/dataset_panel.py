"""Dataset import panel: pick a folder, CSV/TSV or DICOM folder, check it, split it, look at it.

The import itself is `core.data.importer.import_dataset`, run on the engine worker; this panel shows
its `DatasetIndex` (class counts, skipped files, duplicates, warnings, thumbnails) and a
preview of the training augmentation. It talks to the rest of the window only through
`AppState`: a successful import calls `state.set_dataset`, and any dataset that becomes
current (from here or from an opened project) is shown.

The "Unlabelled…" button asks for label assist (`sig_unlabelled_requested`); the shell mounts
`gui.labelling.LabelAssist` on this panel's job client and message bar, so the panel does not know it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.config import SplitConfig
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.data.index import DatasetIndex, look_alikes
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed
from desktop_tl.core.reporting import counted, throttled
from desktop_tl.gui.dataset.augmentation_preview import PREVIEW_JOB, AugmentationPreview, PreviewResult, preview_job
from desktop_tl.gui.dataset.index_views import class_rows, class_table_model, findings_text, fixed_splits
from desktop_tl.gui.dataset.near_duplicate_view import NearDuplicateView
from desktop_tl.gui.dataset.split_settings import SplitSettings
from desktop_tl.gui.state import AppState
from desktop_tl.gui.widgets.item_models import BarDelegate, Column, RecordTableModel
from desktop_tl.gui.widgets.panel_support import BUSY_MESSAGE, JobClient, JobProgress, MessageBar, preview_panel
from desktop_tl.gui.widgets.thumbnail_grid import ThumbnailGrid
from desktop_tl.gui.widgets.thumbnails import ThumbnailCache
from desktop_tl.gui.worker import EngineController, JobContext

IMPORT_JOB = "import"
_PROGRESS_INTERVAL_S = 0.05


def import_job(source: Path, split: SplitConfig, labels_csv: Path | None = None) -> Callable[[JobContext], DatasetIndex]:
    """A job that imports `source` with `split`, then joins the labels confirmed in `labels_csv` (when it exists)
    to the training split; raises UserError or Cancelled like the core."""
    def run(ctx: JobContext) -> DatasetIndex:
        progress = throttled(ctx.progress, _PROGRESS_INTERVAL_S)
        index = import_dataset(source, split, progress, ctx.should_stop)
        if labels_csv is not None and labels_csv.is_file():
            from desktop_tl.core.data.confirmed import with_confirmed

            index = with_confirmed(index, labels_csv, progress, ctx.should_stop)
        return index
    return run


class DatasetImportPanel(QWidget):
    """Import and inspect a dataset; the current dataset lives in `AppState`."""

    sig_unlabelled_requested = Signal()
    """The user chose Unlabelled…: label a folder of unlabelled images (label assist, mounted by the shell)."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None) -> None:
        """Long on purpose: it builds the widgets and their layout in one place, so that reading it top to bottom is
        reading the panel as it appears."""
        super().__init__(parent)
        self.setObjectName("datasetImport")
        self.state = state
        self.jobs = JobClient(controller, self)
        self.thumbnails = ThumbnailCache(parent=self)
        self.source: Path | None = None

        self.folder_button = QPushButton("Image folder…", self)
        self.folder_button.setToolTip("A folder with one subfolder per class, or train/ and val/ folders.")
        self.csv_button = QPushButton("CSV/TSV file…", self)
        self.csv_button.setToolTip("A table of image path and label (and optionally patient/group).")
        self.dicom_button = QPushButton("DICOM folder…", self)
        self.dicom_button.setToolTip("A folder with one subfolder per class holding DICOM files.")
        self.unlabelled_button = QPushButton("Unlabelled…", self)
        self.unlabelled_button.setObjectName("unlabelledButton")
        self.unlabelled_button.setToolTip("Label a folder of unlabelled images, those where a label helps the current "
                                          "model most first (needs a finished run exported in the Export panel).")
        self.summary = QLabel("No dataset yet: pick a folder or a CSV file, or drop it on the window.", self)
        self.summary.setObjectName("datasetSummary")
        self.summary.setWordWrap(True)
        self.progress = JobProgress(self.jobs, self, cancellable={IMPORT_JOB})
        self.message = MessageBar(self)
        self.split_settings = SplitSettings(state.split, self)
        self.split_settings.apply_button.setEnabled(False)

        self.class_model = class_table_model(self)
        self.class_table = self._table(self.class_model, "classTable")
        self.class_table.setItemDelegateForColumn(5, BarDelegate(self.class_table))
        self.skipped_model: RecordTableModel = RecordTableModel([
            Column("File", lambda s: s.path), Column("Why it was left out", lambda s: s.reason)], self)
        self.skipped_table = self._table(self.skipped_model, "skippedTable")
        self.findings = QLabel(self)
        self.findings.setObjectName("datasetFindings")
        self.findings.setWordWrap(True)
        self.findings.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.findings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.grid = ThumbnailGrid(self.thumbnails, self)
        self.preview = AugmentationPreview(state.config.augment, self)
        self.near_view = NearDuplicateView(self)

        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.class_table, "Classes")
        problems = QWidget(self)
        problems_layout = QVBoxLayout(problems)
        problems_layout.addWidget(QLabel("Skipped files", problems))
        problems_layout.addWidget(self.skipped_table, 2)
        problems_layout.addWidget(QLabel("Duplicates and warnings", problems))
        findings = QScrollArea(problems)              # a long list of pairs scrolls; the table keeps its rows
        findings.setWidgetResizable(True)
        findings.setWidget(self.findings)
        problems_layout.addWidget(findings, 1)
        self.near_label = QLabel("Near duplicates (select a pair to see both images)", problems)
        problems_layout.addWidget(self.near_label)
        problems_layout.addWidget(self.near_view, 2)
        self.skipped_table.setMinimumHeight(self.skipped_table.verticalHeader().defaultSectionSize() * 6 + 28)
        self.tabs.addTab(problems, "Problems")
        images = QSplitter(Qt.Orientation.Horizontal, self)
        images.addWidget(self.grid)
        images.addWidget(self.preview)
        images.setStretchFactor(0, 3)
        images.setStretchFactor(1, 2)
        self.tabs.addTab(images, "Images")
        self.tabs.addTab(self.split_settings, "Split")     # a tab, so the class table shows on a 720 px screen

        buttons = QHBoxLayout()
        for button in (self.folder_button, self.csv_button, self.dicom_button, self.unlabelled_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        top = QHBoxLayout()
        left = QVBoxLayout()
        left.addLayout(buttons)
        left.addWidget(self.summary)
        left.addWidget(self.progress)
        left.addWidget(self.message)
        left.addStretch(1)
        top.addLayout(left, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)

        self.folder_button.clicked.connect(lambda: self.choose_folder())
        self.csv_button.clicked.connect(lambda: self.choose_csv())
        self.dicom_button.clicked.connect(lambda: self.choose_folder(dicom=True))
        self.unlabelled_button.clicked.connect(self.sig_unlabelled_requested)
        self.near_view.sig_keep_together.connect(self.keep_near_duplicates_together)
        self.split_settings.sig_apply.connect(self.resplit)
        self.split_settings.sig_changed.connect(self._on_split_edited)
        state.sig_split_changed.connect(self.split_settings.set_config)   # a project opened, say
        self.grid.sig_image_chosen.connect(self.preview.set_image)
        self.preview.sig_requested.connect(self.request_preview)
        self.jobs.sig_result.connect(self._on_result)
        self.jobs.sig_failed.connect(self._on_failed)
        self.jobs.sig_running.connect(self._on_running)
        state.sig_dataset_changed.connect(self.show_dataset)
        if state.dataset is not None:
            self.show_dataset(state.dataset)

    def _table(self, model: RecordTableModel, name: str) -> QTableView:
        table = QTableView(self)
        table.setObjectName(name)
        table.setModel(model)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.verticalHeader().hide()
        table.horizontalHeader().setStretchLastSection(True)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        return table

    # -- actions ---------------------------------------------------------------------------------

    def choose_folder(self, dicom: bool = False) -> None:
        """Ask for a dataset folder and import it."""
        title = "Choose the DICOM dataset folder" if dicom else "Choose the dataset folder (one subfolder per class)"
        folder = QFileDialog.getExistingDirectory(self, title, str(self.start_dir()))
        if folder:
            self.import_path(Path(folder))

    def choose_csv(self) -> None:
        """Ask for a CSV/TSV file of path and label and import it."""
        name, _ = QFileDialog.getOpenFileName(self, "Choose the CSV or TSV file", str(self.start_dir()),
                                              "Tables (*.csv *.tsv);;All files (*)")
        if name:
            self.import_path(Path(name))

    def import_path(self, path: Path) -> bool:
        """Import `path` (folder or CSV/TSV) on the worker with the split settings of `state.split`.

        Returns False (and says why in the panel) when another job is running.
        """
        return self._start_import(Path(path), self.state.split)

    @Slot(object)
    def resplit(self, split: SplitConfig) -> bool:
        """Import the current source again with new split settings."""
        self._on_split_edited(split)
        source = self.source or self.state.data_source
        if source is None:
            self.message.show_note("Import a dataset first; the split applies to it.")
            return False
        return self._start_import(Path(source), split)

    @Slot(object)
    def _on_split_edited(self, split: SplitConfig) -> None:
        self.state.set_split(split)

    def _start_import(self, source: Path, split: SplitConfig) -> bool:
        try:
            split.validate()
        except UserError as exc:
            self.message.show_error(exc.what, exc.hint)
            return False
        if not self.jobs.submit(IMPORT_JOB, import_job(source, split, self.state.labels_csv)):
            self.message.show_note(BUSY_MESSAGE)
            return False
        self.message.show_note(f"Checking every image of {source.name}…")
        return True

    @Slot(object, str)
    def request_preview(self, path: Path, preset: str) -> bool:
        """Compute augmented views of `path` on the worker (which keeps torch's random state serial)."""
        cfg = self.state.config      # the automatic recipe plans its own size: a Custom leftover must not show
        job = preview_job(Path(path), preset, cfg.model, cfg.image_size if cfg.recipe == "custom" else None)
        if not self.jobs.submit(PREVIEW_JOB, job):
            self.preview.caption.setText("The preview runs when no other task is running; try again then.")
            return False
        self.preview.caption.setText(f"Augmenting {Path(path).name}…")
        return True

    def keep_near_duplicates_together(self) -> bool:
        """Split the dataset again with each near-duplicate pair in one split (the Split box's checkbox)."""
        split = replace(self.state.split, group_near_duplicates=True)
        self.split_settings.set_config(split)
        return self.resplit(split)

    def start_dir(self) -> Path:
        """Where a file dialog opens: the current source's folder, else the home folder."""
        source = self.source or self.state.data_source
        return (source if source.is_dir() else source.parent) if source else Path.home()

    # -- results ---------------------------------------------------------------------------------

    @Slot(str, object)
    def _on_result(self, kind: str, result: object) -> None:
        if kind == IMPORT_JOB:
            assert isinstance(result, DatasetIndex)
            self.source = result.source
            self.message.clear_message()
            self.state.set_dataset(result)
        elif kind == PREVIEW_JOB:
            assert isinstance(result, PreviewResult)
            self.preview.show_views(result)

    @Slot(str, object)
    def _on_failed(self, kind: str, failure: Failed) -> None:
        if kind == PREVIEW_JOB:
            self.preview.caption.setText(failure.what)
            return
        if kind != IMPORT_JOB:
            return          # label assist's jobs (on this panel's client) are answered by label assist
        if failure.cancelled:
            kept = "the previous dataset is kept" if self.state.dataset is not None else "no dataset was imported"
            self.message.show_note(f"Import cancelled; {kept}.")
        else:
            self.message.show_failure(failure)

    @Slot(bool)
    def _on_running(self, running: bool) -> None:
        importing = running and self.jobs.active == IMPORT_JOB
        for button in (self.folder_button, self.csv_button, self.dicom_button, self.unlabelled_button):
            button.setEnabled(not importing)
        self.split_settings.apply_button.setEnabled(not importing and (self.source or self.state.data_source)
                                                    is not None)

    @Slot(object)
    def show_dataset(self, index: DatasetIndex | None) -> None:
        """Show `index` (the current dataset), or nothing."""
        self.thumbnails.clear()
        self.preview.set_image(None)
        if index is None:
            self.class_model.set_rows([])
            self.skipped_model.set_rows([])
            self.findings.clear()
            self.grid.set_index(None)
            self.near_view.set_index(None, False)
            self.summary.setText("No dataset yet: pick a folder or a CSV file, or drop it on the window.")
            self.split_settings.apply_button.setEnabled(False)
            return
        self.source = index.source
        self.class_model.set_rows(class_rows(index))
        self.skipped_model.set_rows(index.skipped)
        self.findings.setText(findings_text(index))
        self.grid.set_index(index)
        fixed = fixed_splits(index)
        self.near_view.set_index(index, not fixed)
        for widget in (self.near_label, self.near_view):
            widget.setVisible(bool(index.near_duplicates))
        kind = "class folders" if index.source_kind == "folder" else "CSV/TSV file"
        totals = {s: len(index.split(s)) for s in ("train", "val", "test")}
        self.summary.setText(
            f"{index.source.name} ({kind}): "
            + (f"{counted(len(index.classes), 'label')} (several per image), "
               if index.multi_label else f"{counted(len(index.classes), 'class', 'classes')}, ")
            + f"{counted(len(index.samples), 'usable image')} "
            f"(train {totals['train']}, validation {totals['val']}, test {totals['test']}), "
            f"{len(index.skipped)} skipped, {counted(len(index.warnings), 'warning')}, "
            f"{counted(len(index.duplicates), 'set of identical files', 'sets of identical files')}, "
            f"{counted(len(index.near_duplicates), 'near-duplicate pair')}"
            f"{' (look-alikes)' if look_alikes(index) else ''} (see Problems)."
            + (f" {index.confirmed} of the training images are ones you labelled with Unlabelled…."
               if index.confirmed else ""))
        self.split_settings.setEnabled(not fixed)
        self.split_settings.setToolTip("The dataset's own train/, val/ (and test/) folders are used as the split, "
                                       "so these settings do not apply." if fixed else "")
        self.split_settings.setTitle("Split: the dataset's own train/val/test folders" if fixed else "Split")
        self.split_settings.apply_button.setEnabled(not self.jobs.running)
        problems = len(index.skipped) + len(index.duplicates) + len(index.warnings) + len(index.near_duplicates)
        self.tabs.setTabText(1, f"Problems ({problems})")

    def closeEvent(self, event) -> None:
        """Stop thumbnail decoding when the panel closes."""
        self.thumbnails.shutdown()
        self.near_view.shutdown()
        super().closeEvent(event)


if __name__ == "__main__":      # a preview: python -m desktop_tl.gui.dataset.dataset_panel [DATA_DIR]
    import sys

    def _import_argument(panel: DatasetImportPanel, _state: AppState, args: list[str]) -> None:
        if args:
            panel.import_path(Path(args[0]))

    sys.exit(preview_panel(DatasetImportPanel, 1000, 700, _import_argument))
