"""The views of the Evaluation panel's first tab, configured: the confusion matrix, the per-class table and the
gallery of mistakes, and a titled box for each."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QSize
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QListView, QTableView, QVBoxLayout, QWidget


def confusion_matrix_view(model: QAbstractItemModel, parent: QWidget) -> QTableView:
    """The confusion matrix: one cell selectable at a time, columns as wide as their figures."""
    view = QTableView(parent)
    view.setObjectName("confusionMatrix")
    view.setModel(model)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    view.setToolTip("Rows: true class. Columns: predicted class. Click a cell to see its images.")
    return view


def per_class_view(model: QAbstractItemModel, parent: QWidget) -> QTableView:
    """The per-class figures, without row numbers."""
    view = QTableView(parent)
    view.setObjectName("perClassTable")
    view.setModel(model)
    view.verticalHeader().hide()
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return view


def mistake_gallery(model: QAbstractItemModel, side: int, parent: QWidget) -> QListView:
    """Thumbnails of `side` pixels in a grid that reflows with the panel's width, captions wrapped."""
    view = QListView(parent)
    view.setObjectName("mistakeGallery")
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setIconSize(QSize(side, side))
    view.setGridSize(QSize(side + 40, side + 48))
    view.setUniformItemSizes(True)
    view.setResizeMode(QListView.ResizeMode.Adjust)
    view.setMovement(QListView.Movement.Static)
    view.setModel(model)
    view.setToolTip("Double-click an image to see it larger")
    view.setWordWrap(True)
    return view


def titled(title: str, widget: QWidget, parent: QWidget) -> QWidget:
    """`widget` under a title that wraps when long (instead of widening the panel)."""
    box = QWidget(parent)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(QLabel(title, box, wordWrap=True))
    layout.addWidget(widget, 1)
    return box
