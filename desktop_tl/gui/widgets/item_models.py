"""Qt item models over plain core objects: one list adapter, one matrix adapter, one image list.

Views adapt, the core decides: these models only read Python data given to them with
`set_rows` / `set_matrix` / `set_items` and never compute results themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractListModel, QAbstractTableModel, QModelIndex, QPersistentModelIndex, QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from desktop_tl.gui.widgets.thumbnails import ThumbnailCache

Row = TypeVar("Row")
AnyIndex = QModelIndex | QPersistentModelIndex

BAR_ROLE = Qt.ItemDataRole.UserRole + 1
"""Fraction in [0, 1] drawn as a horizontal bar by `BarDelegate`."""
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
"""The raw value of a cell, for sorting and for tests."""
PATH_ROLE = Qt.ItemDataRole.UserRole + 3
"""Absolute image path of an `ImageListModel` item."""


@dataclass(frozen=True)
class Column(Generic[Row]):
    """One column of a `RecordTableModel`: a header and how to read a row."""

    header: str
    value: Callable[[Row], Any]
    text: Callable[[Any], str] = lambda v: "" if v is None else str(v)
    align_right: bool = False
    bar: Callable[[Row], float | None] | None = None
    tooltip: Callable[[Row], str] | None = None


def fmt_number(value: float | None, digits: int = 3) -> str:
    """A float for a table cell; an em dash when undefined."""
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_percent(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage; an em dash when undefined."""
    return "—" if value is None else f"{value * 100:.{digits}f}%"


class RecordTableModel(QAbstractTableModel, Generic[Row]):
    """Read-only table over a Python list; each `Column` says how to show a row."""

    def __init__(self, columns: Sequence[Column[Row]], parent=None) -> None:
        super().__init__(parent)
        self.columns = list(columns)
        self.rows: list[Row] = []

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Replace every row."""
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section].header
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(column.value(row))
        if role == SORT_ROLE:
            return column.value(row)
        if role == BAR_ROLE and column.bar is not None:
            return column.bar(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.align_right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and column.tooltip is not None:
            return column.tooltip(row)
        return None


class BarDelegate(QStyledItemDelegate):
    """Paints the cell's `BAR_ROLE` fraction as a bar behind its text."""

    def __init__(self, parent=None, colour: QColor = QColor(70, 130, 180)) -> None:
        super().__init__(parent)
        self.colour = colour

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        fraction = index.data(BAR_ROLE)
        if isinstance(fraction, (int, float)):
            if option.state & QStyle.StateFlag.State_Selected:
                painter.fillRect(option.rect, option.palette.highlight())
            rect = QRect(option.rect).adjusted(3, 4, -3, -4)
            rect.setWidth(max(1, round(rect.width() * min(1.0, max(0.0, float(fraction))))))
            painter.fillRect(rect, self.colour)
        super().paint(painter, option, index)


class MatrixModel(QAbstractTableModel):
    """A confusion matrix (rows true, columns predicted) with cells coloured by row share."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.classes: list[str] = []
        self.matrix: list[list[int]] = []

    def set_matrix(self, classes: Sequence[str], matrix: Sequence[Sequence[int]]) -> None:
        """Replace the matrix; `matrix[i][j]` counts images of class i predicted as j."""
        self.beginResetModel()
        self.classes = list(classes)
        self.matrix = [list(map(int, row)) for row in matrix]
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.matrix)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.classes) if self.matrix else 0

    def share(self, row: int, column: int) -> float:
        """The cell's fraction of its true class (row)."""
        total = sum(self.matrix[row])
        return self.matrix[row][column] / total if total else 0.0

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self.classes):
            name = self.classes[section]
            return f"→ {name}" if orientation == Qt.Orientation.Horizontal else name
        if role == Qt.ItemDataRole.ToolTipRole:
            return "predicted class" if orientation == Qt.Orientation.Horizontal else "true class"
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        count = self.matrix[r][c]
        if role == Qt.ItemDataRole.DisplayRole:
            return str(count)
        if role == SORT_ROLE:
            return count
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        share = self.share(r, c)
        if role == Qt.ItemDataRole.BackgroundRole:
            # Correct cells in blue, mistakes in red; intensity by the share of the true class.
            base = (40, 100, 190) if r == c else (200, 50, 40)
            return QColor(*(round(255 - (255 - b) * share) for b in base))
        if role == Qt.ItemDataRole.ForegroundRole:
            return QColor("white") if share > 0.5 else QColor("black")
        if role == Qt.ItemDataRole.ToolTipRole:
            kind = "correct" if r == c else "mistakes"
            return (f"{count} {self.classes[r]!r} images predicted as {self.classes[c]!r} "
                    f"({share:.0%} of {self.classes[r]!r}, {kind}); click to see them")
        return None


@dataclass(frozen=True)
class ImageItem:
    """One picture in a gallery: its file, a caption and a tooltip; `picture` (a PIL image, e.g. a heat map
    over the image) is shown instead of the file's thumbnail when given; `tone` (a colour name) tints the entry,
    e.g. an image the model refers to a person."""

    path: Path
    caption: str
    tooltip: str = ""
    picture: Any = None
    tone: str | None = None


def pixmap_from_pil(image: Any, side: int) -> QPixmap:
    """A PIL image as a QPixmap scaled to fit `side` pixels."""
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    qimage = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(qimage).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation)


class ImageListModel(QAbstractListModel):
    """Images with captions; decorations come lazily from a `ThumbnailCache`.

    Nothing is decoded until a view asks `data(..., DecorationRole)` for a row; views
    should set `uniformItemSizes` so laying out does not ask for every row.
    """

    def __init__(self, thumbnails: ThumbnailCache, parent=None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.items: list[ImageItem] = []
        self._rows_of: dict[str, list[int]] = {}
        self._pictures: dict[int, QPixmap] = {}
        thumbnails.sig_ready.connect(self._on_thumbnail_ready)

    def set_items(self, items: Sequence[ImageItem]) -> None:
        """Replace every item."""
        self.beginResetModel()
        self.items = list(items)
        self._rows_of = {}
        self._pictures = {}
        for row, item in enumerate(self.items):
            self._rows_of.setdefault(str(item.path), []).append(row)
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.items)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item = self.items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.caption
        if role == Qt.ItemDataRole.DecorationRole:
            if item.picture is not None:
                if index.row() not in self._pictures:
                    self._pictures[index.row()] = pixmap_from_pil(item.picture, self.thumbnails.size)
                return self._pictures[index.row()]
            return self.thumbnails.pixmap_or_placeholder(item.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return item.tooltip or str(item.path)
        if role == Qt.ItemDataRole.BackgroundRole and item.tone:
            return QColor(item.tone)
        if role == PATH_ROLE:
            return item.path
        return None

    def _on_thumbnail_ready(self, key: str) -> None:
        for row in self._rows_of.get(key, ()):
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
