"""The Monitor panel: a watch on the engine worker logs images as they arrive, the table shows them newest first
with the heat map of the selected case, the counts and the drift chart follow, Stop ends the watch with a
complete log, and the report with the true labels shows the realised figures beside the promised ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop_tl.core.audit_log import read_entries, verify_log
from desktop_tl.gui.monitor.monitor_jobs import TRIAL_REPORT_JOB, WATCH_JOB
from desktop_tl.gui.monitor.monitor_panel import MonitorPanel

from helpers import DEMO_IMAGES


@pytest.fixture
def model(exported_model) -> Path:
    """The shared run's model, exported (tests/conftest.py)."""
    return exported_model


def test_watch_in_the_window_then_the_report_against_the_true_labels(qtbot, app_state, controller, model,
                                                                    tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    images = sorted(DEMO_IMAGES.rglob("*.jpg"))[:6]
    for image in images[:3]:
        shutil.copy(image, folder / image.name)
    panel = MonitorPanel(app_state, controller)
    qtbot.addWidget(panel)
    assert not panel.start() and "Choose the model" in panel.message.text()
    assert not panel.use_run_model() and "no exported model" in panel.message.text()
    panel.model_field.setText(str(model))
    panel.folder_field.setText(str(folder))
    panel.folder_field.editingFinished.emit()
    assert panel.log_field.text() == str(tmp_path / "incoming.trial.jsonl")      # beside the folder
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.watching and panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: panel.cases_model.rowCount() == 3, timeout=60_000)
    for image in images[3:]:                                   # arriving while the window watches
        shutil.copy(image, folder / image.name)
    qtbot.waitUntil(lambda: panel.cases_model.rowCount() == 6, timeout=60_000)
    assert "6 images logged (6 answered, 0 uncertain, 0 unfamiliar)" in panel.status.text()
    assert panel.familiarity is not None and panel.expected_line.isVisible()
    assert not panel.show_report() and "Stop the watch first" in panel.message.text()
    newest = panel.cases_model.rows[0]
    assert newest["path"] in {p.name for p in images[3:]}
    panel.table.selectRow(0)
    assert not panel.heatmap.pixmap().isNull() and newest["path"] in panel.heatmap.toolTip()

    with qtbot.waitSignal(panel.jobs.sig_result, timeout=30_000) as ended:
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    assert ended.args[0] == WATCH_JOB and not panel.watching and panel.start_button.isEnabled()
    assert panel.status.text().startswith("Stopped.")
    log = Path(panel.log_field.text())
    assert verify_log(log).ok and read_entries(log)[-1]["kind"] == "stop"
    assert sorted(e["path"] for e in read_entries(log) if e["kind"] == "image") == sorted(p.name for p in images)

    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\n" + "".join(f"{p.name},{p.parent.name}\n" for p in images))
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=30_000) as reported:
        assert panel.show_report(truth)
    assert reported.args[0] == TRIAL_REPORT_JOB
    text = panel.report.toPlainText()
    assert "Hash chain intact." in text and "Against the true labels: 6 cases matched" in text
    assert "promised (test split)" in text
    assert app_state.trial_report["truth"]["matched"] == 6       # the Evaluation panel's HTML report includes it
