"""Near-duplicate pairs of the imported dataset (data.near_duplicates), those that cross splits first: the pair
selected in the table is shown side by side, each image with its split, and the distance between them; one
action, "Keep each pair in one split", asks for the split that groups them (the Split box's checkbox)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelection, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.data.index import DatasetIndex, NearDuplicate
from desktop_tl.gui.widgets.item_models import Column, RecordTableModel
from desktop_tl.gui.widgets.thumbnails import ThumbnailCache

PAIR_SIDE = 128
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


class NearDuplicateView(QWidget):
    """The pairs in a table and the selected pair's two images next to each other."""

    sig_keep_together = Signal()
    """The user asked to keep each pair in one split."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("nearDuplicates")
        self.root: Path | None = None
        self.split_of: dict[str, str] = {}
        self.thumbnails = ThumbnailCache(size=PAIR_SIDE, capacity=64, parent=self)
        self.model: RecordTableModel[NearDuplicate] = RecordTableModel([
            Column("Image", lambda n: n.paths[0]),
            Column("Near twin", lambda n: n.paths[1]),
            Column("Splits", lambda n: " / ".join(self.split_of.get(p, "?") for p in n.paths)),
            Column("Distance", lambda n: n.distance, align_right=True,
                   tooltip=lambda n: f"{n.distance} of 64 bits differ between their closest perceptual hashes"),
        ], self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.images = [QLabel(self), QLabel(self)]
        self.captions = [QLabel(self, wordWrap=True), QLabel(self, wordWrap=True)]
        pair = QGridLayout()
        for column, (image, caption) in enumerate(zip(self.images, self.captions, strict=True)):
            image.setFixedSize(PAIR_SIDE, PAIR_SIDE)
            image.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.setMaximumWidth(PAIR_SIDE + 40)
            caption.setAlignment(Qt.AlignmentFlag.AlignTop)
            pair.addWidget(image, 0, column)
            pair.addWidget(caption, 1, column)
        self.distance = QLabel(self)
        pair.addWidget(self.distance, 2, 0, 1, 2)
        self.keep_button = QPushButton("Keep each pair in one split", self)
        self.keep_button.setToolTip("Split the dataset again with each near-duplicate pair kept in one split "
                                    "(ticks 'Keep near duplicates together' in the Split box).")
        left = QVBoxLayout()
        left.addWidget(self.table, 1)
        left.addWidget(self.keep_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(left, 1)
        layout.addLayout(pair)
        self.table.selectionModel().selectionChanged.connect(self._on_selected)
        self.keep_button.clicked.connect(self.sig_keep_together.emit)
        self.thumbnails.sig_ready.connect(lambda _key: self._show_pair())

    def set_index(self, index: DatasetIndex | None, can_regroup: bool) -> None:
        """Show the pairs of `index` (crossing splits first) and select the first; `can_regroup`: whether
        splitting again can keep them together (not when the dataset's own folders fix the split)."""
        self.thumbnails.clear()
        pairs = sorted(index.near_duplicates, key=lambda n: not n.cross_split) if index is not None else []
        self.root = index.root if index is not None else None
        self.split_of = {s.path: s.split for s in index.samples} if index is not None else {}
        self.model.set_rows(pairs)
        self.table.resizeColumnsToContents()
        crossing = any(n.cross_split for n in pairs)
        self.keep_button.setEnabled(crossing and can_regroup)
        if pairs:
            self.table.selectRow(0)
        self._show_pair()

    def current(self) -> NearDuplicate | None:
        """The selected pair."""
        rows = self.table.selectionModel().selectedRows()
        return self.model.rows[rows[0].row()] if rows else None

    @Slot(QItemSelection, QItemSelection)
    def _on_selected(self, *_) -> None:
        self._show_pair()

    def _show_pair(self) -> None:
        pair = self.current()
        for number, (image, caption) in enumerate(zip(self.images, self.captions, strict=True)):
            if pair is None or self.root is None:
                image.clear()
                caption.clear()
                continue
            path = pair.paths[number]
            pixmap = self.thumbnails.get(self.root / path)
            if pixmap is None:
                image.setText("…")
            else:
                image.setPixmap(pixmap)
            caption.setText(f"{Path(path).name}\n{SPLIT_NAMES.get(self.split_of.get(path, ''), '?')}")
            caption.setToolTip(path)
        self.distance.setText("" if pair is None else
                              f"{pair.distance} bits apart{': in different splits' if pair.cross_split else ''}")

    def shutdown(self) -> None:
        """Stop decoding thumbnails (the panel closes)."""
        self.thumbnails.shutdown()
