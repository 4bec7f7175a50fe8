"""The whole journey through the window with real data: import, pick, freeze, train, evaluate, export, classify."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from desktop_tl.core.deploy.predict import OnnxClassifier
from desktop_tl.gui.export.export_panel import PREDICT_JOB

TIMEOUT_MS = 180_000


def test_full_flow_through_the_window(qtbot, main_window, tiny_images, tmp_path, monkeypatch):
    window = main_window
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda *a: (_ for _ in ()).throw(
        AssertionError(f"unexpected warning: {a[2]}"))))
    window.resize(1400, 900)
    window.show()

    # 1. import a small real-image dataset through the dataset panel
    window.state.set_split(replace(window.state.split, val_fraction=0.25, test_fraction=0.25))
    with qtbot.waitSignal(window.state.sig_dataset_changed, timeout=TIMEOUT_MS,
                          check_params_cb=lambda index: index is not None):
        assert window.dataset_panel.import_path(tiny_images)
    assert window.state.dataset.classes == ["cat", "coffee"]

    # 2. pick the bundled model in the browser (after looking at another one)
    browser = window.model_browser
    browser.table.selectRow(browser.table_model.row_of("resnet18"))
    assert window.state.config.model == "resnet18"
    browser.table.selectRow(browser.table_model.row_of("efficientnet_lite0"))
    assert (window.state.config.model, window.state.config.weights) == ("efficientnet_lite0", "bundled")

    # 3. a freeze preset: the last stage and the head train
    tree = window.freeze_tree
    tree.last_spin.setValue(1)
    qtbot.mouseClick(tree.last_button, Qt.MouseButton.LeftButton)
    assert window.state.config.freeze == "last:1"
    assert tree.tree_model.index_of("blocks.6").data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked

    # 4. train one epoch from the training panel
    monitor = window.training_monitor
    monitor.epochs.setValue(1)
    monitor.batch_size.setValue(4)
    monitor.image_size.setValue(64)
    monitor.augment.setCurrentText("none")
    monitor.device.setCurrentIndex(monitor.device.findData("cpu"))
    window.state.update_config(num_workers=0)             # no loader processes in tests
    run_dir = tmp_path / "runs" / "first"
    monitor.set_run_dir(run_dir)
    with qtbot.waitSignal(monitor.sig_training_finished, timeout=TIMEOUT_MS) as finished:
        qtbot.mouseClick(monitor.start_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].completed
    counts = monitor.point_counts()
    assert counts["batch_loss"] >= 2 and counts["train_loss"] == counts["val_accuracy"] == 1
    assert window.state.run_dir == run_dir

    # 5. the evaluation panel shows the run's test figures
    evaluation = window.evaluation_panel
    test = window.state.metrics["test"]
    assert test["images"] == 4
    assert f"{test['images']} images" in evaluation.summary.text()
    assert f"{test['accuracy'] * 100:.1f}%" in evaluation.summary.text()
    assert evaluation.class_model.rowCount() == 2
    assert window.docks["evaluationPanel"].isVisible()

    # 6. export to ONNX through the export panel (its tab brought to the front, as a user would)
    window.docks["exportPanel"].raise_()
    qtbot.waitUntil(lambda: window.export_panel.isVisible(), timeout=5000)
    assert not window.controller.busy and window.export_panel.export_button.isEnabled()
    onnx_file = tmp_path / "exported" / "cats_or_coffee.onnx"
    onnx_file.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(onnx_file), "")))
    with qtbot.waitSignal(window.state.sig_export_changed, timeout=120_000,
                          check_params_cb=lambda result: result is not None) as exported:
        qtbot.mouseClick(window.export_panel.export_button, Qt.MouseButton.LeftButton)
        assert window.controller.current_kind == "export", window.export_panel.message.text()
    assert exported.args[0].parity_ok and onnx_file.is_file()

    # 7. classify one image with the exported model, in the panel and with the ONNX file alone
    image = sorted((tiny_images / "coffee").glob("*.png"))[0]
    assert not window.controller.busy
    with qtbot.waitSignal(window.export_panel.jobs.sig_result, timeout=TIMEOUT_MS) as predicted:
        assert window.export_panel.classify([image])
    assert predicted.args[0] == PREDICT_JOB
    row = window.export_panel.results_model.data(window.export_panel.results_model.index(0))
    assert row.startswith(image.name) and ("cat" in row or "coffee" in row)
    prediction = OnnxClassifier(onnx_file).predict_files([(image, image.name)])
    first = next(iter(prediction))
    assert first.error is None and first.label in ("cat", "coffee") and 0.0 <= first.probability <= 1.0

    # the project remembers all of it, with relative paths
    assert window.save_project(tmp_path / "flow.dtlproj")
    text = (tmp_path / "flow.dtlproj").read_text()
    assert '"runs/first"' in text and str(tmp_path) not in text

    shot = os.environ.get("DESKTOP_TL_SCREENSHOT")
    if shot:                                             # optional: keep a picture of the finished window
        window.grab().save(str(Path(shot)))
