"""Dataset import panel: pick a folder, CSV/TSV or DICOM folder, check it, split it, look at it.

The import itself is `core.data.importer.import_dataset`, run on the engine worker; this panel shows
its `DatasetIndex` (class counts, skipped files, duplicates, warnings, thumbnails) and a
preview of the training augmentation. It talks to the rest of the window only through
`AppState`: a successful import calls `state.set_dataset`, and any dataset that becomes
current (from here or from an opened project) is shown.

Label assist starts here too: "Unlabelled…" scores a folder of unlabelled images with the current run's
exported model on the worker and opens the labelling grid (`unlabelled_dialog`); the labels confirmed there
join the training split of every import (`core.data.confirmed`), and Retrain asks the window for a new run
(the actions are in `label_assist_actions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
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
from desktop_tl.core.data.index import DatasetIndex, look_alikes, near_duplicate_lines
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed
from desktop_tl.core.reporting import counted, throttled
from desktop_tl.gui.augmentation_preview import PREVIEW_JOB, AugmentationPreview, PreviewResult, preview_job
from desktop_tl.gui.item_models import BarDelegate, Column, RecordTableModel
from desktop_tl.gui.label_assist_actions import ASSIST_JOB, RETRAIN_JOB, LabelAssistActions
from desktop_tl.gui.label_assist_jobs import Retraining, Scored
from desktop_tl.gui.near_duplicate_view import NearDuplicateView
from desktop_tl.gui.panel_support import BUSY_MESSAGE, JobClient, JobProgress, MessageBar, preview_panel
from desktop_tl.gui.split_settings import SplitSettings
from desktop_tl.gui.state import AppState
from desktop_tl.gui.thumbnail_grid import ThumbnailGrid
from desktop_tl.gui.thumbnails import ThumbnailCache
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


# --------------------------------------------------------------------------- adapters


@dataclass(frozen=True)
class ClassRow:
    """One class of the class table."""

    name: str
    train: int
    val: int
    test: int
    largest: int

    @property
    def total(self) -> int:
        """Images of the class in all splits."""
        return self.train + self.val + self.test

    @property
    def share_of_largest(self) -> float:
        """Size relative to the largest class (1.0 for the largest)."""
        return self.total / self.largest if self.largest else 0.0


def class_rows(index: DatasetIndex) -> list[ClassRow]:
    """Class table rows of an index."""
    counts = index.counts()
    largest = max((sum(c.values()) for c in counts.values()), default=0)
    return [ClassRow(name, counts[name]["train"], counts[name]["val"], counts[name]["test"], largest)
            for name in index.classes]


def class_table_model(parent=None) -> RecordTableModel[ClassRow]:
    """Class, train/val/test counts, total, and a bar of the size relative to the largest class."""
    return RecordTableModel([
        Column("Class", lambda r: r.name),
        Column("Train", lambda r: r.train, align_right=True),
        Column("Val", lambda r: r.val, align_right=True),
        Column("Test", lambda r: r.test, align_right=True),
        Column("Total", lambda r: r.total, align_right=True),
        Column("Size vs largest class", lambda r: r.share_of_largest, text=lambda v: f"{v:.0%}",
               bar=lambda r: r.share_of_largest,
               tooltip=lambda r: f"{r.name!r} has {r.total} of the largest class's {r.largest} images"),
    ], parent)


def findings_text(index: DatasetIndex) -> str:
    """Duplicates and warnings in plain language, one paragraph each."""
    lines = []
    for dup in index.duplicates:
        where = "in different splits (a leak between training and evaluation)" if dup.cross_split else "in one split"
        lines.append(f"• {len(dup.paths)} identical files {where}: {', '.join(dup.paths)}")
    lines += [f"• {w}" for w in index.warnings]
    near = near_duplicate_lines(index)
    if near:
        lines += [f"• {near[1]}"] + near[2:]
    return "\n".join(lines) if lines else "No duplicates, no warnings."


def fixed_splits(index: DatasetIndex) -> bool:
    """True when the source fixed the splits (train/ and val/ folders), so split settings do not apply."""
    return index.source_kind == "folder" and (index.source / "train").is_dir() and any(
        (index.source / name).is_dir() for name in ("val", "valid", "validation"))


# --------------------------------------------------------------------------- widgets


class DatasetImportPanel(LabelAssistActions, QWidget):
    """Import and inspect a dataset; the current dataset lives in `AppState`."""

    sig_train_requested = Signal()
    """Retrain: the dataset with the confirmed labels and the settings are in `AppState`; start a new run."""

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
        self.progress = JobProgress(self.jobs, self, cancellable={IMPORT_JOB, ASSIST_JOB, RETRAIN_JOB})
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
        self.assist = None            # the open labelling grid (unlabelled_dialog.UnlabelledDialog)

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
        self.unlabelled_button.clicked.connect(lambda: self.label_unlabelled())
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
        folder = QFileDialog.getExistingDirectory(self, title, str(self._start_dir()))
        if folder:
            self.import_path(Path(folder))

    def choose_csv(self) -> None:
        """Ask for a CSV/TSV file of path and label and import it."""
        name, _ = QFileDialog.getOpenFileName(self, "Choose the CSV or TSV file", str(self._start_dir()),
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

    def _start_dir(self) -> Path:
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
        elif kind == ASSIST_JOB:
            assert isinstance(result, Scored)
            self._open_assist(result)
        elif kind == RETRAIN_JOB:
            assert isinstance(result, Retraining)
            self._start_retraining(result)

    @Slot(str, object)
    def _on_failed(self, kind: str, failure: Failed) -> None:
        if kind == PREVIEW_JOB:
            self.preview.caption.setText(failure.what)
            return
        if kind in (ASSIST_JOB, RETRAIN_JOB):
            if failure.cancelled:
                self.message.show_note("Cancelled.")
            else:
                self.message.show_failure(failure)
            return
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
            f"{index.source.name} ({kind}): {counted(len(index.classes), 'class', 'classes')}, "
            f"{counted(len(index.samples), 'usable image')} "
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


if __name__ == "__main__":      # a preview: python -m desktop_tl.gui.dataset_panel [DATA_DIR]
    import sys

    def _import_argument(panel: DatasetImportPanel, _state: AppState, args: list[str]) -> None:
        if args:
            panel.import_path(Path(args[0]))

    sys.exit(preview_panel(DatasetImportPanel, 1000, 700, _import_argument))
