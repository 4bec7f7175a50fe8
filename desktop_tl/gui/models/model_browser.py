"""Model browser: search the catalog, see which weights are available offline, pick a model.

The table is a thin `QAbstractTableModel` over `desktop_tl.core.models.catalog.ModelEntry` rows; the
catalog decides what is listed. Importing a weights file runs on the engine worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed
from desktop_tl.gui.state import AppState
from desktop_tl.gui.widgets.panel_support import JobClient
from desktop_tl.gui.worker import EngineController, JobContext

if TYPE_CHECKING:   # the catalog and the weights store import timm and torch: loaded on first use
    from desktop_tl.core.models.catalog import ModelEntry
    from desktop_tl.core.models.store import StoredWeights

IMPORT_JOB = "import_weights"

# How each weights source looks at a glance: (label, colour).
SOURCE_STYLE: dict[str, tuple[str, str]] = {
    "bundled": ("bundled", "#2e7d32"),
    "cache": ("HF cache", "#1565c0"),
    "imported": ("imported", "#6a1b9a"),
    "none": ("none", "#9e9e9e"),
}

_Index = QModelIndex | QPersistentModelIndex
LOADING_TEXT = "Loading models…"


def list_models(query: str = "", include_all: bool = False) -> list[ModelEntry]:
    """`desktop_tl.core.models.catalog.list_models`, importing the catalog (and timm) on first use."""
    from desktop_tl.core.models.catalog import list_models as catalog_list_models

    return catalog_list_models(query, include_all=include_all)


def _dot_icon(colour: str, size: int = 10) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(colour))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(0, 0, size, size)
    painter.end()
    return QIcon(pixmap)


class ModelTableModel(QAbstractTableModel):
    """Adapter of a list of ModelEntry to a table: name, parameters, input size, weights."""

    COLUMNS = ("Model", "Params (M)", "Input", "Weights")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._entries: list[ModelEntry] = []
        self._icons = {source: _dot_icon(colour) for source, (_, colour) in SOURCE_STYLE.items()}

    def set_entries(self, entries: list[ModelEntry]) -> None:
        """Replace all rows."""
        self.beginResetModel()
        self._entries = list(entries)
        self.endResetModel()

    def icon_for(self, source: str) -> QIcon:
        """The coloured dot of a weights source (bundled, cache, imported, none)."""
        return self._icons.get(source, QIcon())

    def entry(self, row: int) -> ModelEntry:
        """The catalog entry shown in `row`."""
        return self._entries[row]

    def row_of(self, name: str) -> int:
        """Row of the architecture `name`, or -1."""
        return next((i for i, e in enumerate(self._entries) if e.name == name), -1)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        entry, column = self._entries[index.row()], index.column()
        source = entry.best_weights.source
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return entry.name
            if column == 1:
                return "?" if entry.params is None else f"{entry.params / 1e6:.1f}"
            if column == 2:
                return f"{entry.input_size[1]}×{entry.input_size[2]}"
            label = SOURCE_STYLE.get(source, (source, ""))[0]
            pretrained = sum(w.pretrained for w in entry.weights)
            return label if pretrained <= 1 else f"{label} +{pretrained - 1}"
        if role == Qt.ItemDataRole.ForegroundRole and column == 3:
            return QColor(SOURCE_STYLE.get(source, ("", "#000000"))[1])
        if role == Qt.ItemDataRole.DecorationRole and column == 3:
            return self._icons.get(source)
        if role == Qt.ItemDataRole.FontRole and column == 0 and entry.shortlisted:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (1, 2):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{entry.description}\nWeights: " + "; ".join(w.label for w in entry.weights)
        return None


class ModelBrowser(QWidget):
    """Search box, catalog table and details pane; the selection goes to `AppState.set_model`."""

    sig_catalog_refreshed = Signal(int)
    """Number of rows after the catalog was listed again (search, checkbox, imported weights)."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None, *,
                 load: bool = True) -> None:
        """Long on purpose: it builds the widgets and their layout in one place, so that reading it top to bottom is
        reading the panel as it appears."""
        super().__init__(parent)
        self.setObjectName("modelBrowser")
        self.state, self.controller = state, controller
        self._syncing = False

        self.search = QLineEdit(placeholderText="Search models, e.g. resnet or convnext*")
        self.search.setClearButtonEnabled(True)
        self.all_checkbox = QCheckBox("all timm architectures")
        self.all_checkbox.setToolTip("List every timm architecture, not only the shortlist and those with weights")
        self.table_model = ModelTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.setMinimumHeight(5 * (self.fontMetrics().height() + 8))
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)

        self.description_label = QLabel(wordWrap=True)
        self.weights_combo = QComboBox()
        self.weights_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.weights_combo.setMinimumContentsLength(20)
        self.weights_combo.setToolTip("Which pretrained weights initialise the model")
        self.import_button = QPushButton("Import weights…")
        self.import_button.setToolTip("Add a .safetensors/.pth file made for the selected architecture")

        details = QFormLayout()
        details.setContentsMargins(0, 0, 0, 0)
        details.addRow(self.description_label)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_combo, 1)
        weights_row.addWidget(self.import_button)
        details.addRow("Weights:", weights_row)

        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.all_checkbox)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(details)       # above the list: the weights choice stays in view on a small screen
        layout.addWidget(self.table, 1)

        self._search_timer = QTimer(self, singleShot=True, interval=250)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(self._search_timer.start)
        self.all_checkbox.toggled.connect(self.refresh)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.weights_combo.activated.connect(self._on_weights_picked)
        self.import_button.clicked.connect(self.import_weights)
        state.sig_model_changed.connect(self._on_state_model)
        self.jobs = JobClient(controller, self)
        self.jobs.sig_result.connect(self._on_result)
        self.jobs.sig_failed.connect(self._on_failed)

        self.loaded = False
        """Whether the catalog has been listed once (it imports timm, so the window may defer it)."""
        if load:
            self.refresh()
        else:   # `ensure_loaded` (or any use that needs the catalog) fills the table later
            self.description_label.setText(LOADING_TEXT)
            self.import_button.setEnabled(False)

    def ensure_loaded(self) -> None:
        """List the catalog if it has not been listed yet."""
        if not self.loaded:
            self.refresh()

    # -- catalog -----------------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """List the catalog again for the current search text and checkbox, keeping the selection."""
        self._search_timer.stop()
        self.loaded = True
        try:
            entries = list_models(self.search.text(), include_all=self.all_checkbox.isChecked())
        except UserError as exc:
            self._warn("Cannot list the models", exc.what, exc.hint)
            entries = []
        self._syncing = True
        try:
            self.table_model.set_entries(entries)
            self._select_row(self.table_model.row_of(self.state.config.model))
        finally:
            self._syncing = False
        self._show_details(self.current_entry())
        self.sig_catalog_refreshed.emit(len(entries))

    def current_entry(self) -> ModelEntry | None:
        """The entry of the selected row, if any."""
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.entry(rows[0].row()) if rows else None

    def select_model(self, name: str, weights: str | None = None) -> bool:
        """Select `name` in the table (it must be listed) and optionally a weights id; True on success."""
        self.ensure_loaded()
        row = self.table_model.row_of(name)
        if row < 0:
            return False
        self._select_row(row)
        if weights is not None:
            combo_row = self.weights_combo.findData(weights)
            if combo_row >= 0:
                self.weights_combo.setCurrentIndex(combo_row)
                self._on_weights_picked(combo_row)
        return True

    def _select_row(self, row: int) -> None:
        if row < 0:
            self.table.selectionModel().clear()
            return
        self.table.selectRow(row)
        self.table.scrollTo(self.table_model.index(row, 0))

    def _show_details(self, entry: ModelEntry | None) -> None:
        self.weights_combo.clear()
        self.import_button.setEnabled(entry is not None)
        if entry is None:
            self.description_label.setText("No model selected: pick one in the table.")
            return
        params = "unknown size" if entry.params is None else f"{entry.params / 1e6:.1f} M parameters"
        self.description_label.setText(f"<b>{entry.name}</b>: {entry.description}. {params}, input "
                                       f"{entry.input_size[1]}×{entry.input_size[2]} px.")
        for option in entry.weights:
            self.weights_combo.addItem(self.table_model.icon_for(option.source), option.label, option.id)
        wanted = self.weights_combo.findData(self.state.config.weights) if entry.name == self.state.config.model else -1
        self.weights_combo.setCurrentIndex(max(wanted, 0))

    # -- selection ---------------------------------------------------------------------------------
    @Slot()
    def _on_selection_changed(self, *_args) -> None:
        entry = self.current_entry()
        self._show_details(entry)
        if entry is not None and not self._syncing:
            self._publish()

    @Slot(int)
    def _on_weights_picked(self, _row: int) -> None:
        if not self._syncing:
            self._publish()

    def _publish(self) -> None:
        entry = self.current_entry()
        weights = self.weights_combo.currentData()
        if entry is None or weights is None:
            return
        if (entry.name, weights) != (self.state.config.model, self.state.config.weights):
            self._syncing = True
            try:
                self.state.set_model(entry.name, weights)
            finally:
                self._syncing = False

    @Slot(str, str)
    def _on_state_model(self, name: str, weights: str) -> None:
        """Follow a model chosen elsewhere (a project was opened)."""
        if self._syncing:
            return
        self.ensure_loaded()
        self._syncing = True
        try:
            if self.table_model.row_of(name) < 0:
                self.search.blockSignals(True)
                self.search.clear()
                self.search.blockSignals(False)
                self.all_checkbox.blockSignals(True)
                self.all_checkbox.setChecked(name not in {e.name for e in list_models()})
                self.all_checkbox.blockSignals(False)
                self.table_model.set_entries(list_models("", include_all=self.all_checkbox.isChecked()))
            self._select_row(self.table_model.row_of(name))
            self._show_details(self.current_entry())
        finally:
            self._syncing = False

    # -- importing weights ---------------------------------------------------------------------------
    @Slot()
    def import_weights(self) -> None:
        """Ask for a weights file and import it for the selected architecture (on the worker)."""
        entry = self.current_entry()
        if entry is None:
            return
        from desktop_tl.core.models.weight_files import WEIGHTS_SUFFIXES

        patterns = " ".join(f"*{suffix}" for suffix in WEIGHTS_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, f"Import weights for {entry.name}", str(Path.home()),
                                              f"Weights files ({patterns});;All files (*)")
        if not path:
            return
        arch = entry.name

        def job(_ctx: JobContext) -> StoredWeights:
            from desktop_tl.core.models.store import import_weights

            return import_weights(Path(path), arch)

        if not self.jobs.submit(IMPORT_JOB, job):
            self._warn("Busy", "Another task is running.", "Import the weights when it has finished.")
            return
        self.import_button.setEnabled(False)
        self.import_button.setText("Checking weights…")

    @Slot(str, object)
    def _on_result(self, _kind: str, result: StoredWeights) -> None:
        self._reset_import_button()
        self.refresh()
        self.select_model(result.arch, f"imported:{result.id}")

    @Slot(str, object)
    def _on_failed(self, _kind: str, failed: Failed) -> None:
        self._reset_import_button()
        self._warn("These weights do not fit", failed.what, failed.hint)

    def _reset_import_button(self) -> None:
        self.import_button.setText("Import weights…")
        self.import_button.setEnabled(self.current_entry() is not None)

    def _warn(self, title: str, what: str, hint: str) -> None:
        QMessageBox.warning(self, title, f"{what}\n\nWhat to do: {hint}" if hint else what)


if __name__ == "__main__":  # preview: python -m desktop_tl.gui.models.model_browser
    import sys

    from desktop_tl.gui.widgets.panel_support import preview_panel

    sys.exit(preview_panel(ModelBrowser, 520, 600))
