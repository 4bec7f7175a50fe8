"""The dataset panel's image grid: the thumbnails of one class, decoded on demand."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, QSize, Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QListView, QVBoxLayout, QWidget

from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.reporting import counted
from desktop_tl.gui.widgets.item_models import PATH_ROLE, ImageItem, ImageListModel
from desktop_tl.gui.widgets.thumbnails import ThumbnailCache


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
        self.count.setText(counted(len(items), "image"))

    @Slot(QModelIndex)
    def _on_clicked(self, index: QModelIndex) -> None:
        self.sig_image_chosen.emit(index.data(PATH_ROLE))
