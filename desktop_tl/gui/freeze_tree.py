"""Layer-freeze tree: which modules of the selected model train, with presets and parameter counts.

The tree is a `QAbstractItemModel` over `desktop_tl.core.freeze.ModuleNode`. The model is built
on the meta device (structure and shapes only: no memory, no weights), so it is cheap. Every
decision (which parameters a spec trains, which spec a set of modules means) is made by
`desktop_tl.core.freeze`; this panel only shows it and sends the spec to `AppState.set_freeze`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QPushButton, QSpinBox, QTreeView, QVBoxLayout, QWidget

from desktop_tl.core.errors import UserError
from desktop_tl.gui.state import AppState
from desktop_tl.gui.worker import EngineController

if TYPE_CHECKING:   # torch (via core.freeze) loads on first use, not when the window's modules are imported
    from torch import nn

    from desktop_tl.core.models.freeze import ModuleNode

_Index = QModelIndex | QPersistentModelIndex
_DEFAULT_CLASSES = 2


def _freeze():
    """`desktop_tl.core.freeze`, imported on first use (it imports torch)."""
    from desktop_tl.core.models import freeze

    return freeze


def build_structure(name: str, num_classes: int) -> nn.Module:
    """`name` built on the meta device with a `num_classes` head: structure only, no weights."""
    import timm
    import torch

    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=num_classes)


def _under(name: str, module: str) -> bool:
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

    def __init__(self, parent: QWidget | None = None) -> None:
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
                if _under(name, child.name):
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
        return bool(self.head) and _under(node.name, self.head)

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

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802 - Qt API
        if parent.isValid() and parent.column() != 0:
            return 0
        node = self.node(parent)
        return len(node.children) if node is not None else 0

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802 - Qt API
        return len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 - Qt API
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

    def setData(self, index: _Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        node = self.node(index)
        if role != Qt.ItemDataRole.CheckStateRole or node is None or not index.isValid() or self.is_head(node):
            return False
        state = Qt.CheckState(value) if not isinstance(value, Qt.CheckState) else value
        self.sig_toggled.emit(node.name, state != Qt.CheckState.Unchecked)
        return True


class FreezeTree(QWidget):
    """Tree of the selected model's modules with presets; changes go to `AppState.set_freeze`."""

    sig_counts_changed = Signal(int, int)
    """(trainable, total) parameters under the current freeze spec."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None, *,
                 build: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("freezeTree")
        self.state, self.controller = state, controller
        self.model: nn.Module | None = None
        self._built_for: tuple[str, int] | None = None
        self._trainable: set[str] = set()

        self.summary = QLabel()
        self.summary.setObjectName("freezeSummary")
        self.recipe_note = QLabel("The automatic recipe decides which layers train: a linear probe of the "
                                  "classifier, then every layer. Choosing layers here switches the Training "
                                  "panel to the Custom recipe.", wordWrap=True)
        self.recipe_note.setObjectName("freezeRecipeNote")
        self.recipe_note.setStyleSheet("color: #555555;")
        self.head_button = QPushButton("Head only")
        self.head_button.setToolTip("Train only the new classifier (fast; best with few images)")
        self.last_button = QPushButton("Last N blocks")
        self.last_button.setToolTip("Train the classifier and the last N stages of the network")
        self.last_spin = QSpinBox(minimum=1, maximum=1, value=1)
        self.last_spin.setToolTip("How many of the last stages train")
        self.all_button = QPushButton("Everything")
        self.all_button.setToolTip("Fine-tune the whole network (slow on a CPU; needs more images)")
        self.tree_model = ModuleTreeModel(self)
        self.view = QTreeView()
        self.view.setModel(self.tree_model)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)

        presets = QHBoxLayout()
        presets.addWidget(self.head_button)
        presets.addWidget(self.last_button)
        presets.addWidget(self.last_spin)
        presets.addWidget(self.all_button)
        presets.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.recipe_note)
        layout.addWidget(self.summary)
        layout.addLayout(presets)
        layout.addWidget(self.view, 1)

        self.head_button.clicked.connect(lambda: self.apply_preset("head"))
        self.all_button.clicked.connect(lambda: self.apply_preset("all"))
        self.last_button.clicked.connect(lambda: self.apply_preset(f"last:{self.last_spin.value()}"))
        self.tree_model.sig_toggled.connect(self.toggle_module)
        state.sig_model_changed.connect(self._on_model_changed)
        state.sig_dataset_changed.connect(self._on_dataset_changed)
        state.sig_freeze_changed.connect(self._on_freeze_changed)
        state.sig_recipe_changed.connect(lambda recipe, _budget: self.recipe_note.setVisible(recipe == "auto"))
        self.recipe_note.setVisible(state.config.recipe == "auto")
        self._attempted = False
        if build:
            self.rebuild()
        else:   # the window shows first; `ensure_built` runs once the engine (torch, timm) is loaded
            self.summary.setText("Loading layers…")

    def ensure_built(self) -> None:
        """Build the structure if nothing has been built (or tried) yet."""
        if not self._attempted:
            self.rebuild()

    # -- building ----------------------------------------------------------------------------------
    def _num_classes(self) -> int:
        dataset = self.state.dataset
        classes = len(dataset.classes) if dataset is not None else 0
        return classes if classes >= 2 else _DEFAULT_CLASSES

    def rebuild(self) -> None:
        """Build the selected architecture's structure and show it under the current spec."""
        key = (self.state.config.model, self._num_classes())
        self._attempted = True
        try:
            self.model = build_structure(*key)
            head = _freeze().classifier_name(self.model)
            blocks = len(_freeze().parameter_groups(self.model)) - 1
        except UserError as exc:
            self.model, self._built_for = None, None
            self.tree_model.set_tree(None, "")
            self.summary.setText(f"Cannot show the layers of {key[0]}: {exc.what}")
            return
        except Exception as exc:  # noqa: BLE001 - an exotic timm architecture must not take the window down
            self.model, self._built_for = None, None
            self.tree_model.set_tree(None, "")
            self.summary.setText(f"Cannot show the layers of {key[0]} ({type(exc).__name__}: {exc}).")
            return
        self._built_for = key
        self.last_spin.setMaximum(max(1, blocks))
        self.last_spin.setSuffix(f" of {blocks}")
        spec = self._apply(self.state.config.freeze)
        self.tree_model.set_tree(_freeze().module_tree(self.model), head)
        self._expand_stages()
        self._show_counts()
        if spec != self.state.config.freeze:
            self.state.set_freeze(spec)

    def _expand_stages(self) -> None:
        """Open the top-level modules that hold several parameterised parts (the stages)."""
        model = self.tree_model
        for row in range(model.rowCount()):
            index = model.index(row, 0)
            node = model.node(index)
            if node is not None and sum(1 for child in node.children if child.params) >= 2:
                self.view.expand(index)

    def _apply(self, spec: str) -> str:
        """Apply `spec` to the structure; an invalid spec (from another model) falls back to head."""
        assert self.model is not None
        try:
            _freeze().apply_freeze(self.model, spec)
        except UserError:
            spec = "head"
            _freeze().apply_freeze(self.model, spec)
        self._trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return spec

    def _show_counts(self) -> None:
        if self.model is None:
            return
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        share = trainable / total if total else 0.0
        self.summary.setText(f"<b>Trainable {trainable:,} / total {total:,}</b> parameters ({share:.1%}) — "
                             f"freeze: <code>{self.state.config.freeze}</code>")
        self.sig_counts_changed.emit(trainable, total)

    # -- user actions ------------------------------------------------------------------------------
    def apply_preset(self, spec: str) -> None:
        """Apply a preset spec (head | all | last:N) and publish it (the user chose: the Custom recipe)."""
        if self.model is not None:
            self._choose_custom()
            self.state.set_freeze(self._apply(spec))

    def _choose_custom(self) -> None:
        if self.state.config.recipe != "custom":
            self.state.set_recipe("custom")

    @Slot(str, bool)
    def toggle_module(self, name: str, trainable: bool) -> None:
        """The user ticked (or unticked) module `name`: compute the resulting spec and publish it."""
        if self.model is None:
            return
        params = {n for n, _ in self.model.named_parameters() if _under(n, name) or not name}
        chosen = (self._trainable | params) if trainable else (self._trainable - params)
        modules = self._covering_modules(chosen)
        spec = "all" if not name and trainable else _freeze().spec_from_trainable_modules(self.model, modules)
        self._choose_custom()
        self.state.set_freeze(spec)

    def _covering_modules(self, chosen: set[str]) -> list[str]:
        """The fewest modules whose parameters are exactly the trainable ones (head left out: it always trains)."""
        assert self.model is not None
        head = self.tree_model.head
        own = {name: [n for n, _ in module.named_parameters(prefix=name, recurse=True)]
               for name, module in self.model.named_modules() if name}
        modules: list[str] = []

        def walk(prefix: str, module: nn.Module) -> None:
            for child_name, child in module.named_children():
                name = f"{prefix}.{child_name}" if prefix else child_name
                names = own.get(name, [])
                if not names or _under(name, head):
                    continue
                if all(n in chosen for n in names):
                    modules.append(name)
                elif any(n in chosen for n in names):
                    walk(name, child)

        walk("", self.model)
        return modules

    # -- state -------------------------------------------------------------------------------------
    @Slot(str, str)
    def _on_model_changed(self, name: str, _weights: str) -> None:
        if self._built_for is None or self._built_for[0] != name:
            self.rebuild()

    @Slot(object)
    def _on_dataset_changed(self, _index: object) -> None:
        if self._built_for != (self.state.config.model, self._num_classes()):
            self.rebuild()

    @Slot(str)
    def _on_freeze_changed(self, spec: str) -> None:
        if self.model is None:
            return
        applied = self._apply(spec)
        self.tree_model.update_counts(_freeze().module_tree(self.model))
        self._show_counts()
        if applied != spec:
            self.state.set_freeze(applied)


if __name__ == "__main__":  # preview: python -m desktop_tl.gui.freeze_tree
    import sys

    from desktop_tl.gui.panel_support import preview_panel

    sys.exit(preview_panel(FreezeTree, 560, 640))
