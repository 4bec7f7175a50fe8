"""Layer-freeze tree: which modules of the selected model train, with presets and parameter counts.

The tree is a `ModuleTreeModel` over `desktop_tl.core.models.freeze.ModuleNode`. The model is built
on the meta device (structure and shapes only: no memory, no weights), so it is cheap. Every
decision (which parameters a spec trains, which spec a set of modules means) is made by
`desktop_tl.core.models.freeze`; this panel only shows it and sends the spec to `AppState.set_freeze`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QPushButton, QTreeView, QVBoxLayout, QWidget

from desktop_tl.core.errors import UserError
from desktop_tl.gui.layers.module_tree_model import ModuleTreeModel, under
from desktop_tl.gui.state import AppState
from desktop_tl.gui.widgets.number_box import NumberBox
from desktop_tl.gui.worker import EngineController

if TYPE_CHECKING:   # torch (via core.models.freeze) loads on first use, not when the window's modules are imported
    from torch import nn


_DEFAULT_CLASSES = 2


def _freeze():
    """`desktop_tl.core.models.freeze`, imported on first use (it imports torch)."""
    from desktop_tl.core.models import freeze

    return freeze


def build_structure(name: str, num_classes: int) -> nn.Module:
    """`name` built on the meta device with a `num_classes` head: structure only, no weights."""
    from desktop_tl.core.models.structure import build

    return build(name, num_classes, meta=True)


class FreezeTree(QWidget):
    """Tree of the selected model's modules with presets; changes go to `AppState.set_freeze`."""

    sig_counts_changed = Signal(int, int)
    """(trainable, total) parameters under the current freeze spec."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None, *,
                 build: bool = True) -> None:
        """Long on purpose: it builds the widgets and their layout in one place, so that reading it top to bottom is
        reading the panel as it appears."""
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
        self.last_spin = NumberBox("The number of stages", minimum=1, maximum=1, value=1)
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
        params = {n for n, _ in self.model.named_parameters() if under(n, name) or not name}
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
                if not names or under(name, head):
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


if __name__ == "__main__":  # preview: python -m desktop_tl.gui.layers.freeze_tree
    import sys

    from desktop_tl.gui.widgets.panel_support import preview_panel

    sys.exit(preview_panel(FreezeTree, 560, 640))
