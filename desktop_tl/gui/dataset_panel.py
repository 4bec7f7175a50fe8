"""Dataset import panel: pick a folder, CSV/TSV or DICOM folder, check it, split it, look at it.

The import itself is `core.dataset.import_dataset`, run on the engine worker; this panel shows
its `DatasetIndex` (class counts, skipped files, duplicates, warnings, thumbnails) and a
preview of the training augmentation. It talks to the rest of the window only through
`AppState`: a successful import calls `state.set_dataset`, and any dataset that becomes
current (from here or from an opened project) is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from PIL import Image
from PySide6.QtCore import QModelIndex, QSize, Qt, Signal, Slot
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.config import AUGMENT_PRESETS, SplitConfig
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed
from desktop_tl.core.reporting import throttled
from desktop_tl.gui.item_models import PATH_ROLE, BarDelegate, Column, ImageItem, ImageListModel, RecordTableModel
from desktop_tl.gui.panel_support import BUSY_MESSAGE, JobClient, JobProgress, MessageBar, preview_panel
from desktop_tl.gui.state import AppState
from desktop_tl.gui.thumbnails import ThumbnailCache, pil_to_qimage
from desktop_tl.gui.worker import EngineController, JobContext

IMPORT_JOB = "import"
PREVIEW_JOB = "augment-preview"
PREVIEW_COUNT = 6
PREVIEW_SIZE = 128
_PROGRESS_INTERVAL_S = 0.05

_DEFAULT_DATA_CONFIG = {
    "input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.875,
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
}


# --------------------------------------------------------------------------- worker-side jobs
# These functions run on the engine thread: they compute and return data, never touch widgets.


def import_job(source: Path, split: SplitConfig) -> Callable[[JobContext], DatasetIndex]:
    """A job that imports `source` with `split`; raises UserError or Cancelled like the core."""
    def run(ctx: JobContext) -> DatasetIndex:
        return import_dataset(source, split, throttled(ctx.progress, _PROGRESS_INTERVAL_S), ctx.should_stop)
    return run


@lru_cache(maxsize=16)
def model_preprocessing(model_name: str | None, image_size: int | None) -> Preprocessing:
    """The preprocessing of timm's `model_name` (built on the meta device: no weights, no memory).

    Falls back to 224 px, bicubic, ImageNet mean/std when no model is chosen or it cannot be built.
    """
    cfg = _DEFAULT_DATA_CONFIG
    if model_name:
        try:
            import timm
            import torch

            from desktop_tl.core.models.structure import data_config

            with torch.device("meta"):
                model = timm.create_model(model_name, pretrained=False)
            cfg = data_config(model)
        except Exception:  # noqa: BLE001 - an unknown or exotic model only loses its exact preview
            cfg = _DEFAULT_DATA_CONFIG
    return Preprocessing.from_data_config(cfg, image_size)


@dataclass(frozen=True)
class PreviewResult:
    """Augmented views of one image."""

    path: Path
    preset: str
    views: list[Image.Image]


def preview_job(path: Path, preset: str, model_name: str | None, image_size: int | None,
                count: int = PREVIEW_COUNT, seed: int = 0) -> Callable[[JobContext], PreviewResult]:
    """A job that makes `count` augmented views of `path` as training would see them."""
    def run(ctx: JobContext) -> PreviewResult:
        from desktop_tl.core.data.imageio import ImageLoadError, load_image
        from desktop_tl.core.data.transforms import augmentation_preview

        try:
            image = load_image(path)
        except ImageLoadError as exc:
            raise UserError(f"{path.name} cannot be previewed: {exc.reason}.", "Pick another image.") from exc
        prep = model_preprocessing(model_name, image_size)
        return PreviewResult(path, preset, augmentation_preview(image, prep, preset, count, seed))
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
    return "\n".join(lines) if lines else "No duplicates, no warnings."


def fixed_splits(index: DatasetIndex) -> bool:
    """True when the source fixed the splits (train/ and val/ folders), so split settings do not apply."""
    return index.source_kind == "folder" and (index.source / "train").is_dir() and any(
        (index.source / name).is_dir() for name in ("val", "valid", "validation"))


# --------------------------------------------------------------------------- widgets


class SplitSettings(QGroupBox):
    """Validation and test fractions, seed, patient grouping; Re-split applies them to the dataset."""

    sig_changed = Signal(object)
    """SplitConfig after the user edited a setting."""
    sig_apply = Signal(object)
    """SplitConfig the user wants the current dataset re-split with."""

    def __init__(self, config: SplitConfig, parent: QWidget | None = None) -> None:
        super().__init__("Split", parent)
        self.val = self._fraction_box("Share of each class held out to watch training (validation).")
        self.test = self._fraction_box("Share of each class kept apart for the final test score.")
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Same seed, same split.")
        self.group = QCheckBox("Keep each patient in one split (DICOM PatientID or CSV group column)", self)
        self.apply_button = QPushButton("Re-split", self)
        self.apply_button.setObjectName("applySplit")
        self.apply_button.setToolTip("Import the same dataset again with these split settings.")
        self.apply_button.clicked.connect(lambda: self.sig_apply.emit(self.config()))
        form = QFormLayout(self)
        form.addRow("Validation", self.val)
        form.addRow("Test", self.test)
        form.addRow("Seed", self.seed)
        form.addRow(self.group)
        form.addRow(self.apply_button)
        self.set_config(config)
        for box in (self.val, self.test):
            box.valueChanged.connect(self._emit_changed)
        self.seed.valueChanged.connect(self._emit_changed)
        self.group.toggled.connect(self._emit_changed)

    def _emit_changed(self, *_) -> None:
        self.sig_changed.emit(self.config())

    def _fraction_box(self, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox(self)
        box.setRange(0.0, 0.8)
        box.setSingleStep(0.05)
        box.setDecimals(3)
        box.setToolTip(tip)
        return box

    def config(self) -> SplitConfig:
        """The settings shown."""
        return SplitConfig(round(self.val.value(), 4), round(self.test.value(), 4), self.seed.value(),
                           self.group.isChecked())

    def set_config(self, config: SplitConfig) -> None:
        """Show `config` (without emitting sig_changed)."""
        for widget in (self.val, self.test, self.seed, self.group):
            widget.blockSignals(True)
        self.val.setValue(config.val_fraction)
        self.test.setValue(config.test_fraction)
        self.seed.setValue(config.seed)
        self.group.setChecked(config.group_by_patient)
        for widget in (self.val, self.test, self.seed, self.group):
            widget.blockSignals(False)


class AugmentationPreview(QWidget):
    """Preset selector and the augmented views of the chosen image."""

    sig_requested = Signal(object, str)
    """(image path, preset) the user wants to see."""

    def __init__(self, preset: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self.preset = QComboBox(self)
        self.preset.addItems(AUGMENT_PRESETS)
        self.preset.setCurrentText(preset if preset in AUGMENT_PRESETS else "light")
        self.preset.setToolTip("none: resize and crop only; light: random crops and flips; "
                               "strong: also vertical flips, colour and geometry changes.")
        self.show_button = QPushButton("Show", self)
        self.show_button.setObjectName("previewButton")
        self.show_button.setEnabled(False)
        self.caption = QLabel("Click an image to see how training augments it.", self)
        self.caption.setWordWrap(True)
        self.views = QListWidget(self)
        self.views.setObjectName("augmentationViews")
        self.views.setViewMode(QListView.ViewMode.IconMode)
        self.views.setIconSize(QSize(PREVIEW_SIZE, PREVIEW_SIZE))
        self.views.setResizeMode(QListView.ResizeMode.Adjust)
        self.views.setMovement(QListView.Movement.Static)
        self.views.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        row = QHBoxLayout()
        row.addWidget(QLabel("Augmentation", self))
        row.addWidget(self.preset, 1)
        row.addWidget(self.show_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.caption)
        layout.addWidget(self.views, 1)
        self.show_button.clicked.connect(self.request)
        self.preset.currentTextChanged.connect(lambda _: self.request())

    def set_image(self, path: Path | None) -> None:
        """Choose the image to augment and ask for its preview."""
        self.path = path
        self.show_button.setEnabled(path is not None)
        if path is None:
            self.views.clear()
            self.caption.setText("Click an image to see how training augments it.")
        else:
            self.request()

    def request(self) -> None:
        """Ask for views of the current image with the current preset."""
        if self.path is not None:
            self.sig_requested.emit(self.path, self.preset.currentText())

    def show_views(self, result: PreviewResult) -> None:
        """Show the augmented views."""
        self.views.clear()
        for number, view in enumerate(result.views, start=1):
            item = QListWidgetItem(QIcon(QPixmap.fromImage(pil_to_qimage(view))), f"#{number}")
            self.views.addItem(item)
        size = result.views[0].size if result.views else (0, 0)
        self.caption.setText(f"{result.path.name}: {len(result.views)} random '{result.preset}' views at "
                             f"{size[0]}×{size[1]} px, as the model sees them in training.")


class ThumbnailGrid(QWidget):
    """A class selector over a grid of lazily loaded thumbnails."""

    sig_image_chosen = Signal(object)
    """Absolute path of the clicked image."""

    def __init__(self, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index: DatasetIndex | None = None
        self.class_box = QComboBox(self)
        self.class_box.setObjectName("thumbnailClass")
        self.count = QLabel(self)
        self.model = ImageListModel(thumbnails, self)
        self.view = QListView(self)
        self.view.setObjectName("thumbnailGrid")
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setIconSize(QSize(thumbnails.size, thumbnails.size))
        self.view.setGridSize(QSize(thumbnails.size + 28, thumbnails.size + 34))
        self.view.setUniformItemSizes(True)        # layout must not ask every row for its icon
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setWordWrap(False)
        self.view.setModel(self.model)
        row = QHBoxLayout()
        row.addWidget(QLabel("Class", self))
        row.addWidget(self.class_box, 1)
        row.addWidget(self.count)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        self.class_box.currentIndexChanged.connect(self._show_class)
        self.view.clicked.connect(self._on_clicked)

    def set_index(self, index: DatasetIndex | None) -> None:
        """Show the classes of `index` (the first one selected)."""
        self.index = index
        self.class_box.blockSignals(True)
        self.class_box.clear()
        if index is not None:
            self.class_box.addItems(index.classes)
        self.class_box.blockSignals(False)
        self._show_class(0 if index is not None and index.classes else -1)

    def select_class(self, name: str) -> None:
        """Show the images of class `name`."""
        self.class_box.setCurrentText(name)

    @Slot(int)
    def _show_class(self, position: int) -> None:
        index = self.index
        if index is None or position < 0:
            self.model.set_items([])
            self.count.clear()
            return
        items = [ImageItem(index.abs_path(s), Path(s.path).name, f"{s.path} ({s.split})")
                 for s in index.samples if s.label == position]
        self.model.set_items(items)
        self.count.setText(f"{len(items)} images")

    @Slot(QModelIndex)
    def _on_clicked(self, index: QModelIndex) -> None:
        self.sig_image_chosen.emit(index.data(PATH_ROLE))


class DatasetImportPanel(QWidget):
    """Import and inspect a dataset; the current dataset lives in `AppState`."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None) -> None:
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

        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.class_table, "Classes")
        problems = QWidget(self)
        problems_layout = QVBoxLayout(problems)
        problems_layout.addWidget(QLabel("Skipped files", problems))
        problems_layout.addWidget(self.skipped_table, 2)
        problems_layout.addWidget(QLabel("Duplicates and warnings", problems))
        problems_layout.addWidget(self.findings, 1)
        self.tabs.addTab(problems, "Problems")
        images = QSplitter(Qt.Orientation.Horizontal, self)
        images.addWidget(self.grid)
        images.addWidget(self.preview)
        images.setStretchFactor(0, 3)
        images.setStretchFactor(1, 2)
        self.tabs.addTab(images, "Images")

        buttons = QHBoxLayout()
        for button in (self.folder_button, self.csv_button, self.dicom_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        top = QHBoxLayout()
        left = QVBoxLayout()
        left.addLayout(buttons)
        left.addWidget(self.summary)
        left.addWidget(self.progress)
        left.addWidget(self.message)
        left.addStretch(1)
        top.addLayout(left, 3)
        top.addWidget(self.split_settings, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)

        self.folder_button.clicked.connect(lambda: self.choose_folder())
        self.csv_button.clicked.connect(lambda: self.choose_csv())
        self.dicom_button.clicked.connect(lambda: self.choose_folder(dicom=True))
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
        if not self.jobs.submit(IMPORT_JOB, import_job(source, split)):
            self.message.show_note(BUSY_MESSAGE)
            return False
        self.message.show_note(f"Checking every image of {source.name}…")
        return True

    @Slot(object, str)
    def request_preview(self, path: Path, preset: str) -> bool:
        """Compute augmented views of `path` on the worker (which keeps torch's random state serial)."""
        job = preview_job(Path(path), preset, self.state.config.model, self.state.config.image_size)
        if not self.jobs.submit(PREVIEW_JOB, job):
            self.preview.caption.setText("The preview runs when no other task is running; try again then.")
            return False
        self.preview.caption.setText(f"Augmenting {Path(path).name}…")
        return True

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

    @Slot(str, object)
    def _on_failed(self, kind: str, failure: Failed) -> None:
        if kind == PREVIEW_JOB:
            self.preview.caption.setText(failure.what)
            return
        if failure.cancelled:
            kept = "the previous dataset is kept" if self.state.dataset is not None else "no dataset was imported"
            self.message.show_note(f"Import cancelled; {kept}.")
        else:
            self.message.show_failure(failure)

    @Slot(bool)
    def _on_running(self, running: bool) -> None:
        importing = running and self.jobs.active == IMPORT_JOB
        for button in (self.folder_button, self.csv_button, self.dicom_button):
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
            self.summary.setText("No dataset yet: pick a folder or a CSV file, or drop it on the window.")
            self.split_settings.apply_button.setEnabled(False)
            return
        self.source = index.source
        self.class_model.set_rows(class_rows(index))
        self.skipped_model.set_rows(index.skipped)
        self.findings.setText(findings_text(index))
        self.grid.set_index(index)
        kind = "class folders" if index.source_kind == "folder" else "CSV/TSV file"
        totals = {s: len(index.split(s)) for s in ("train", "val", "test")}
        self.summary.setText(
            f"{index.source.name} ({kind}): {len(index.classes)} classes, {len(index.samples)} usable images "
            f"(train {totals['train']}, validation {totals['val']}, test {totals['test']}), "
            f"{len(index.skipped)} skipped, {len(index.warnings)} warnings.")
        fixed = fixed_splits(index)
        self.split_settings.setEnabled(not fixed)
        self.split_settings.setToolTip("The train/ and val/ folders fix the split." if fixed else "")
        self.split_settings.apply_button.setEnabled(not self.jobs.running)
        self.tabs.setTabText(1, f"Problems ({len(index.skipped) + len(index.duplicates) + len(index.warnings)})")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Stop thumbnail decoding when the panel closes."""
        self.thumbnails.shutdown()
        super().closeEvent(event)


if __name__ == "__main__":      # a preview: python -m desktop_tl.gui.dataset_panel [DATA_DIR]
    import sys

    def _import_argument(panel: DatasetImportPanel, _state: AppState, args: list[str]) -> None:
        if args:
            panel.import_path(Path(args[0]))

    sys.exit(preview_panel(DatasetImportPanel, 1000, 700, _import_argument))
