"""Export panel: a real ONNX export of a tiny run, its parity check, and classifying dropped images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog

from desktop_tl.core.deploy.export import ExportResult
from desktop_tl.gui.export.export_panel import EXPORT_JOB, PREDICT_JOB, ExportPanel


@pytest.fixture
def panel(qtbot, app_state, controller):
    widget = ExportPanel(app_state, controller)
    qtbot.addWidget(widget)
    widget.resize(800, 700)
    widget.show()
    yield widget
    widget.close()


@pytest.fixture
def run_copy(tmp_path_factory, trained_run) -> Path:
    """A private copy of the shared run (export writes into the run folder).

    It sits at the same depth as the original, so the run's relative dataset path still resolves.
    """
    target = tmp_path_factory.mktemp("export_runs") / "run"
    shutil.copytree(trained_run, target)
    return target


def _mime(paths: list[Path]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def _drop(panel: ExportPanel, paths: list[Path]) -> QDropEvent:
    mime = _mime(paths)
    enter = QDragEnterEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    panel.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(drop)
    return drop


def test_export_shows_parity_and_metadata_then_classifies_dropped_images(
        qtbot, panel, app_state, run_copy, small_dataset, tmp_path, monkeypatch):
    app_state.set_run(run_copy)
    chosen = run_copy / "exported" / "tiny"
    chosen.parent.mkdir()
    asked = []

    def save_dialog(parent, title, default, filters):
        asked.append(default)
        return str(chosen), filters            # no suffix typed: the panel adds .onnx

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    with qtbot.waitSignal(app_state.sig_export_changed, timeout=300_000) as exported:
        qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
        assert not panel.export_button.isEnabled() and panel.progress.isVisible()
        assert not panel.progress.cancel_button.isVisible()      # export cannot be stopped halfway
    assert asked == [str(run_copy / "model.onnx")]
    result = exported.args[0]
    onnx_file = chosen.with_suffix(".onnx")
    assert onnx_file.is_file() and result.parity_ok
    assert "Parity with PyTorch: OK" in panel.parity.text()
    assert "1 image" in panel.parity.text() and "7 images" in panel.parity.text()
    assert panel.file_label.text() == str(onnx_file)
    assert "MB" in panel.size_label.text() and "opset" in panel.size_label.text()
    keys = [panel.metadata_model.rows[r][0] for r in range(panel.metadata_model.rowCount())]
    assert {"classes", "arch", "input_size", "mean", "std"} <= set(keys)
    assert panel.try_button.isEnabled()

    good = sorted((small_dataset / "brick").glob("*.jpg"))[0]
    text = tmp_path / "note.png"
    text.write_text("not a picture", encoding="utf-8")
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000) as predicted:
        drop = _drop(panel, [good, text])
        assert drop.isAccepted()
    assert predicted.args[0] == PREDICT_JOB
    classes = app_state.export.metadata["classes"]
    model = panel.results_model
    assert model.rowCount() == 2
    first = model.data(model.index(0))
    assert first.startswith(good.name) and "%" in first and any(c in first for c in classes)
    assert "cannot be read" in model.data(model.index(1))
    assert "1 image classified; 1 could not be read" in panel.message.text()
    assert "Unfamiliar images:" in panel.try_hint.text()      # the rules predict applies, in words
    from desktop_tl.core.deploy.predict import OnnxClassifier

    item = model.items[0]                          # Try it shows where the model looked, as predict computes it
    expected = next(OnnxClassifier(onnx_file).predict_files([(good, str(good))], heatmaps=True)).heatmap
    assert item.picture is not None and np.array_equal(np.asarray(item.picture), np.asarray(expected))
    assert "where the model looked" in model.data(model.index(0), Qt.ItemDataRole.ToolTipRole)
    assert not model.data(model.index(0), Qt.ItemDataRole.DecorationRole).isNull()

    folder = small_dataset / "coins"
    picked = [str(p) for p in sorted(folder.glob("*"))[:3]]
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: (picked, ""))
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000):
        qtbot.mouseClick(panel.try_button, Qt.MouseButton.LeftButton)
    assert model.rowCount() == 3


def test_export_needs_a_run_and_reports_failures(qtbot, panel, app_state, tmp_path, monkeypatch):
    assert not panel.export_button.isEnabled()
    assert not panel.export()
    assert "Train a run or open one first" in panel.message.text()

    app_state.set_run(tmp_path / "not_a_run")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    assert not panel.export()                                # dialog cancelled: nothing starts
    assert not panel.jobs.running

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "m.onnx"), ""))
    with qtbot.waitSignal(panel.jobs.sig_failed, timeout=60_000) as failed:
        assert panel.export()
    assert failed.args[0] == EXPORT_JOB
    assert panel.message.kind == "error" and "holds no desktop_tl run" in panel.message.text()
    assert app_state.export is None and panel.export_button.isEnabled()

    mime = _mime([tmp_path])
    enter = QDragEnterEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    panel.dragEnterEvent(enter)
    assert not enter.isAccepted()                            # nothing exported: drops are refused


def test_opening_a_run_shows_its_earlier_export(panel, app_state, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.onnx").write_bytes(b"stand-in")
    (run / "export.json").write_text(json.dumps({
        "onnx_file": "model.onnx", "size_bytes": 1_234_567, "opset": 18,
        "parity_max_abs_diff": {"batch_1": 1e-7, "batch_7": 2e-7}, "parity_ok": True,
        "metadata": {"arch": "efficientnet_lite0"}}), encoding="utf-8")
    app_state.set_run(run)
    assert app_state.export is not None and app_state.export.size_bytes == 1_234_567
    assert "OK" in panel.parity.text() and panel.file_label.text() == str(run / "model.onnx")
    assert panel.try_button.isEnabled()

    (run / "model.onnx").unlink()
    app_state.set_run(None)
    assert app_state.export is None and panel.parity.text() == "Not exported yet."
    app_state.set_run(run)
    assert "not found" in panel.file_label.text() and not panel.try_button.isEnabled()


def test_failed_parity_is_shown_plainly(panel, app_state, tmp_path):
    app_state.set_run(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"stand-in")
    app_state.set_export(ExportResult("model.onnx", 2_500_000, 18, {"batch_1": 3e-3, "batch_7": 4e-3}, False,
                                      {"classes": '["a", "b"]', "arch": "resnet18"}))
    assert "FAILED" in panel.parity.text() and "do not use it" in panel.parity.text()
    assert panel.file_label.text() == str(tmp_path / "model.onnx")
    assert panel.size_label.text().startswith("2.5 MB")
    assert panel.metadata_model.rows[0] == ("classes", '["a", "b"]')
    app_state.set_export(None)
    assert panel.parity.text() == "Not exported yet." and not panel.try_button.isEnabled()


def test_try_it_shows_the_status_of_each_image_and_counts_the_referred():
    from desktop_tl.core.deploy.predict import Prediction
    from desktop_tl.gui.export.export_panel import STATUS_TONES, prediction_item, status_summary

    probabilities = {"brick": 0.55, "coins": 0.45}
    answered = Prediction("a/one.png", "brick", 0.55, probabilities, status="answered")
    uncertain = Prediction("a/two.png", "brick", 0.55, probabilities, status="uncertain")
    unfamiliar = Prediction("a/three.png", "coins", 0.45, probabilities, status="unfamiliar", unfamiliarity=900.0)
    unreadable = Prediction("a/four.png", None, None, {}, error="not an image")
    assert prediction_item(answered).tone is None and "Refer" not in prediction_item(answered).caption
    item = prediction_item(uncertain)
    assert item.caption.endswith("Refer: uncertain") and item.tone == STATUS_TONES["uncertain"]
    assert "refer the image to a person" in item.tooltip
    item = prediction_item(unfamiliar)
    assert "Refer: unfamiliar image" in item.caption and "(nearest: coins)" in item.caption
    assert item.tone == STATUS_TONES["unfamiliar"] and "unlike the images the model was trained on" in item.tooltip
    assert status_summary([answered, uncertain, unfamiliar, unreadable]) == (
        "3 images classified: 1 answered, 1 uncertain and 1 unfamiliar (refer those to a person); "
        "1 could not be read.")
    assert status_summary([unreadable] * 4) == "None of the 4 images could be read."    # not "4 classified"
    assert status_summary([answered]) == "1 image classified."
    assert status_summary([answered, unfamiliar]) == (
        "2 images classified: 1 answered, 1 unfamiliar (refer those to a person).")
