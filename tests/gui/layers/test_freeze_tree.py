"""Layer-freeze tree: presets, tri-state checks, the trainable/total label, state.config.freeze."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import QPoint, Qt

from desktop_tl.core.models.freeze import apply_freeze
from desktop_tl.gui.layers.freeze_tree import FreezeTree, build_structure


@pytest.fixture
def tree(qtbot, app_state, controller):
    app_state.set_model("efficientnet_lite0", "bundled")
    widget = FreezeTree(app_state, controller)
    qtbot.addWidget(widget)
    return widget


def _counts(tree: FreezeTree) -> tuple[int, int]:
    match = re.search(r"Trainable ([\d,]+) / total ([\d,]+)", tree.summary.text())
    assert match, tree.summary.text()
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", ""))


def _check(tree: FreezeTree, name: str) -> Qt.CheckState:
    return Qt.CheckState(tree.tree_model.index_of(name).data(Qt.ItemDataRole.CheckStateRole))


def _expected(spec: str) -> tuple[int, int]:
    return apply_freeze(build_structure("efficientnet_lite0", 2), spec)


def test_head_only_by_default_and_head_is_locked(tree, app_state):
    assert app_state.config.freeze == "head"
    assert _counts(tree) == _expected("head")
    head = tree.tree_model.index_of("classifier")
    assert head.isValid() and _check(tree, "classifier") == Qt.CheckState.Checked
    assert not head.flags() & Qt.ItemFlag.ItemIsEnabled, "the classifier always trains: shown disabled"
    assert _check(tree, "blocks") == Qt.CheckState.Unchecked
    assert tree.tree_model.index_of("blocks").data(Qt.ItemDataRole.DisplayRole) == "blocks"
    assert "M" in tree.tree_model.index_of("blocks").siblingAtColumn(2).data()


def test_presets_update_checks_label_and_state(tree, app_state):
    tree.last_spin.setValue(2)
    tree.last_button.click()
    assert app_state.config.freeze == "last:2"
    assert _counts(tree) == _expected("last:2")
    assert _check(tree, "blocks") == Qt.CheckState.PartiallyChecked
    assert _check(tree, "blocks.6") == Qt.CheckState.Checked
    assert _check(tree, "blocks.0") == Qt.CheckState.Unchecked

    tree.all_button.click()
    assert app_state.config.freeze == "all"
    trainable, total = _counts(tree)
    assert trainable == total
    assert _check(tree, "blocks") == _check(tree, "conv_stem") == Qt.CheckState.Checked

    tree.head_button.click()
    assert app_state.config.freeze == "head"
    assert _check(tree, "blocks") == Qt.CheckState.Unchecked
    assert tree.last_spin.maximum() >= 2


def test_toggling_a_node_changes_the_freeze_spec(tree, app_state):
    index = tree.tree_model.index_of("blocks.5")
    assert tree.tree_model.setData(index, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole)
    assert app_state.config.freeze.startswith("modules:") and "blocks.5" in app_state.config.freeze
    assert _check(tree, "blocks.5") == Qt.CheckState.Checked
    assert _check(tree, "blocks") == Qt.CheckState.PartiallyChecked
    assert _counts(tree) == _expected(app_state.config.freeze)

    # the last stage with the final conv and norm (timm's last group) is exactly the "last:1" preset
    for name, state in (("blocks.5", Qt.CheckState.Unchecked), ("blocks.6", Qt.CheckState.Checked),
                        ("conv_head", Qt.CheckState.Checked), ("bn2", Qt.CheckState.Checked)):
        tree.tree_model.setData(tree.tree_model.index_of(name), state.value, Qt.ItemDataRole.CheckStateRole)
    assert app_state.config.freeze == "last:1"

    tree.tree_model.setData(tree.tree_model.index_of("blocks"), Qt.CheckState.Unchecked.value,
                            Qt.ItemDataRole.CheckStateRole)
    assert app_state.config.freeze == "modules:bn2,conv_head"
    for name in ("conv_head", "bn2"):
        tree.tree_model.setData(tree.tree_model.index_of(name), Qt.CheckState.Unchecked.value,
                                Qt.ItemDataRole.CheckStateRole)
    assert app_state.config.freeze == "head"


def test_clicking_a_check_box_in_the_view(qtbot, tree, app_state):
    tree.show()
    index = tree.tree_model.index_of("conv_stem")
    rect = tree.view.visualRect(index)
    # the check box sits at the left of the cell, after the indentation
    qtbot.mouseClick(tree.view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(rect.left() + 10, rect.center().y()))
    assert app_state.config.freeze == "modules:conv_stem"
    assert _check(tree, "conv_stem") == Qt.CheckState.Checked


def test_model_change_rebuilds_the_tree(tree, app_state):
    tree.last_button.click()
    app_state.set_model("resnet18", "none")
    assert tree.tree_model.index_of("fc").isValid() and tree.tree_model.head == "fc"
    assert tree.tree_model.index_of("layer4").isValid()
    assert _counts(tree) == apply_freeze(build_structure("resnet18", 2), app_state.config.freeze)


def test_module_spec_of_another_model_falls_back_to_head(tree, app_state):
    app_state.set_freeze("modules:blocks.5")
    app_state.set_model("resnet18", "none")
    assert app_state.config.freeze == "head"
