"""The layer tree's item model: a `QAbstractItemModel` over core.models.freeze.ModuleNode, with check boxes
for the modules that train and parameter counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor

if TYPE_CHECKING:   # torch (via core.models.freeze) loads on first use
    from desktop_tl.core.models.freeze import ModuleNode

_Index = QModelIndex | QPersistentModelIndex


def under(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def format_count(count: int) -> str:
    """1234567 -> '1.23 M'; small counts stay exact."""
    if count >= 1_000_000:
        return f"{count / 1e6:.2f} M"
    if count >= 10_000:
        return f"{count / 1e3:.1f} k"
    return f"{count:,}"


class ModuleTreeModel(QAbstractItemModel):
    """Adapter of a ModuleNode tree: module, type, parameters; tri-state check = trains."""

    COLUMNS = ("Module", "Type", "Parameters", "Training")

    sig_toggled = Signal(str, bool)
    """(module name, trainable) when the user ticks or unticks a module."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._root: ModuleNode | None = None
        self._parent_of: dict[int, ModuleNode] = {}
        self._row_of: dict[int, int] = {}
        self.head = ""

    def set_tree(self, root: ModuleNode | None, head: str) -> None:
        """Show a new tree; `head` is the classifier's module name (always trains)."""
        self.beginResetModel()
        self._root, self.head = root, head
        self._parent_of, self._row_of = {}, {}
        stack = [root] if root is not None else []
        while stack:
            node = stack.pop()
            for row, child in enumerate(node.children):
                self._parent_of[id(child)] = node
                self._row_of[id(child)] = row
                stack.append(child)
        self.endResetModel()

    def update_counts(self, fresh: ModuleNode) -> None:
        """Take the trainable counts of `fresh` (same structure) and repaint, keeping expansion."""
        if self._root is None:
            return

        def copy(old: ModuleNode, new: ModuleNode) -> None:
            old.trainable, old.params = new.trainable, new.params
            for a, b in zip(old.children, new.children):
                copy(a, b)

        copy(self._root, fresh)
        self._emit_changed(QModelIndex(), self._root)

    def _emit_changed(self, parent: QModelIndex, node: ModuleNode) -> None:
        if not node.children:
            return
        self.dataChanged.emit(self.index(0, 0, parent), self.index(len(node.children) - 1, len(self.COLUMNS) - 1, parent))
        for row, child in enumerate(node.children):
            if child.children:
                self._emit_changed(self.index(row, 0, parent), child)

    def node(self, index: _Index) -> ModuleNode | None:
        """The ModuleNode behind `index` (the model's root for an invalid index)."""
        return index.internalPointer() if index.isValid() else self._root

    def index_of(self, name: str) -> QModelIndex:
        """Index (column 0) of the module with qualified name `name`, or an invalid index."""
        parent = QModelIndex()
        node = self._root
        while node is not None:
            for row, child in enumerate(node.children):
                if under(name, child.name):
                    index = self.index(row, 0, parent)
                    if child.name == name:
                        return index
                    parent, node = index, child
                    break
            else:
                return QModelIndex()
        return QModelIndex()

    def is_head(self, node: ModuleNode) -> bool:
        """True for the classifier and anything inside it."""
        return bool(self.head) and under(node.name, self.head)

    # -- Qt model API ------------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: _Index = QModelIndex()) -> QModelIndex:
        node = self.node(parent)
        if node is None or not 0 <= row < len(node.children) or not 0 <= column < len(self.COLUMNS):
            return QModelIndex()
        return self.createIndex(row, column, node.children[row])

    def parent(self, index: _Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        parent = self._parent_of.get(id(index.internalPointer()))
        if parent is None or parent is self._root:
            return QModelIndex()
        return self.createIndex(self._row_of[id(parent)], 0, parent)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        node = self.node(parent)
        return len(node.children) if node is not None else 0

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def check_state(self, node: ModuleNode) -> Qt.CheckState:
        """Checked when all its parameters train, partial when some do."""
        if node.params and node.trainable == node.params:
            return Qt.CheckState.Checked
        return Qt.CheckState.PartiallyChecked if node.trainable else Qt.CheckState.Unchecked

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        node = self.node(index)
        if not index.isValid() or node is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return node.short_name + ("  (new head, always trains)" if node.name == self.head else "")
            if column == 1:
                return node.type_name
            if column == 2:
                return format_count(node.params) if node.params else "–"
            if column == 3 and node.params:
                return "all" if node.trainable == node.params else format_count(node.trainable) if node.trainable else ""
        if role == Qt.ItemDataRole.CheckStateRole and column == 0 and node.params:
            return self.check_state(node)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (2, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and column in (2, 3) and node.params and not node.trainable:
            return QColor("#9e9e9e")
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{node.name or 'model'} ({node.type_name}): {node.trainable:,} of {node.params:,} parameters train"
            return tip + ("\nThe classifier always trains." if self.is_head(node) else "")
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        node = self.node(index)
        if not index.isValid() or node is None:
            return Qt.ItemFlag.NoItemFlags
        if self.is_head(node):
            return Qt.ItemFlag.NoItemFlags  # shown checked, greyed out: the head always trains
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0 and node.params:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def setData(self, index: _Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        node = self.node(index)
        if role != Qt.ItemDataRole.CheckStateRole or node is None or not index.isValid() or self.is_head(node):
            return False
        state = Qt.CheckState(value) if not isinstance(value, Qt.CheckState) else value
        self.sig_toggled.emit(node.name, state != Qt.CheckState.Unchecked)
        return True


