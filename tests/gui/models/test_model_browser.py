"""Model browser: catalog search, the 'all architectures' switch, selection -> AppState, weights import."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox
from safetensors.torch import save_file

from desktop_tl.gui.models.model_browser import IMPORT_JOB, ModelBrowser


@pytest.fixture
def browser(qtbot, app_state, controller):
    widget = ModelBrowser(app_state, controller)
    qtbot.addWidget(widget)
    return widget


def _names(browser: ModelBrowser) -> list[str]:
    model = browser.table_model
    return [model.entry(row).name for row in range(model.rowCount())]


def test_shortlist_by_default_with_weight_sources(browser):
    names = _names(browser)
    assert "efficientnet_lite0" in names and "resnet18" in names
    assert len(names) < 40, "the shortlist, not every timm architecture"
    row = browser.table_model.row_of("efficientnet_lite0")
    weights = browser.table_model.index(row, 3)
    assert weights.data().startswith("bundled")
    assert weights.data(Qt.ItemDataRole.DecorationRole) is not None
    none_row = browser.table_model.row_of("resnet18")
    assert browser.table_model.index(none_row, 3).data() == "none"
    assert browser.table_model.index(row, 3).data(Qt.ItemDataRole.ForegroundRole) != \
        browser.table_model.index(none_row, 3).data(Qt.ItemDataRole.ForegroundRole)
    params = browser.table_model.entry(row).params
    assert browser.table_model.index(row, 1).data() == f"{params / 1e6:.1f}"   # millions of parameters


def test_search_filters_and_all_architectures(qtbot, browser):
    browser.search.setText("resnet")
    with qtbot.waitSignal(browser.sig_catalog_refreshed, timeout=3000):
        pass
    names = _names(browser)
    assert names and all("resnet" in n for n in names)
    shortlisted = len(names)
    with qtbot.waitSignal(browser.sig_catalog_refreshed, timeout=3000):
        browser.all_checkbox.setChecked(True)
    assert len(_names(browser)) > shortlisted and all("resnet" in n for n in _names(browser))
    browser.search.setText("no_such_model_xyz")
    browser.refresh()
    assert _names(browser) == []


def test_selection_and_weights_update_state(qtbot, browser, app_state):
    changes = []
    app_state.sig_model_changed.connect(lambda name, weights: changes.append((name, weights)))
    row = browser.table_model.row_of("resnet18")
    browser.table.selectRow(row)
    assert (app_state.config.model, app_state.config.weights) == ("resnet18", "none")
    assert changes[-1] == ("resnet18", "none")
    assert "<b>resnet18</b>" in browser.description_label.text()

    browser.show()
    rect = browser.table.visualRect(browser.table_model.index(browser.table_model.row_of("efficientnet_lite0"), 0))
    qtbot.mouseClick(browser.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert (app_state.config.model, app_state.config.weights) == ("efficientnet_lite0", "bundled")
    none_index = browser.weights_combo.findData("none")
    browser.weights_combo.setCurrentIndex(none_index)
    browser.weights_combo.activated.emit(none_index)
    assert app_state.config.weights == "none"


def test_follows_model_chosen_elsewhere(browser, app_state):
    app_state.set_model("convnext_nano", "none")
    assert browser.current_entry().name == "convnext_nano"
    app_state.set_model("resnet10t", "none")          # not in the shortlist: the full catalog is shown
    assert browser.all_checkbox.isChecked() and browser.current_entry().name == "resnet10t"


def test_import_weights_that_do_not_fit_shows_a_message(qtbot, browser, app_state, tmp_path, monkeypatch):
    """resnet18-shaped weights offered for efficientnet_lite0: a clear message naming resnet18."""
    import timm

    state_dict = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path / "resnet18_weights.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    browser.table.selectRow(browser.table_model.row_of("efficientnet_lite0"))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda parent, title, text, *a: shown.append(text)))
    with qtbot.waitSignal(browser.controller.sig_failed, timeout=60_000) as blocker:
        browser.import_button.click()
    assert blocker.args[0] == IMPORT_JOB
    qtbot.waitUntil(lambda: bool(shown), timeout=2000)
    assert "efficientnet_lite0" in shown[0] and "resnet18" in shown[0] and "What to do" in shown[0]
    assert browser.import_button.isEnabled()
    assert app_state.config.weights == "bundled"


def test_import_weights_that_fit_become_selectable(qtbot, browser, app_state, tmp_path, monkeypatch):
    import timm

    torch.manual_seed(0)
    state_dict = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path / "my_resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    browser.table.selectRow(browser.table_model.row_of("resnet18"))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda *a: pytest.fail(f"unexpected message {a}")))
    with qtbot.waitSignal(browser.controller.sig_result, timeout=60_000):
        browser.import_button.click()
    qtbot.waitUntil(lambda: app_state.config.weights.startswith("imported:"), timeout=3000)
    assert app_state.config.model == "resnet18"
    row = browser.table_model.row_of("resnet18")
    assert browser.table_model.index(row, 3).data() == "imported"
