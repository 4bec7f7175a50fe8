"""Project continuity with real training: save, quit during training, reopen; the curves and the log come back,
the runs list shows the interrupted run and Resume finishes it from the window; the run's log names no folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QDialog

from desktop_tl.core.events import CheckpointSaved, EpochEnd
from desktop_tl.core.project import load_project
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.core.runs.run_log import LOG_FILE
from desktop_tl.gui.shell.main_window import MainWindow

TRAIN_TIMEOUT_MS = 180_000


def _window(qtbot) -> MainWindow:
    window = MainWindow()
    window.ask_stop_running_job = lambda: True
    window.ask_save_changes = lambda before="quitting": "discard"
    qtbot.addWidget(window)
    return window


def _stamped_text(line: str) -> str:
    """A log view line without its time stamp."""
    return line.split("  ", 1)[1]


def test_reopened_project_restores_curves_and_log_and_resumes_from_the_runs_list(qtbot, tiny_index, fast_config,
                                                                                  tmp_path):
    window = _window(qtbot)
    window.show()
    window.state.set_dataset(tiny_index)
    fast_config(window.state, batch_size=1, epochs=3)
    assert window.save_project(tmp_path / "study.dtlproj")           # new runs go to the project's runs folder
    events = []
    window.controller.sig_event.connect(lambda e: events.append(e) if isinstance(e, (CheckpointSaved, EpochEnd))
                                        else None)
    monitor = window.training_monitor
    assert monitor.start()
    window.training_monitor.show_runs()
    listed = window.findChild(QDialog, "runsDialog")
    assert [run.status for run in listed.runs] == ["running"]
    qtbot.waitUntil(lambda: any(isinstance(e, CheckpointSaved) for e in events), timeout=TRAIN_TIMEOUT_MS)
    monitor.toggle_pause()
    monitor.toggle_pause()
    seen = [_stamped_text(line) for line in monitor.log.toPlainText().splitlines()
            if line[:2].isdigit() and ("Epoch 1/3" in line or line.endswith(("Paused (after the current batch).",
                                                                              "Continuing.")))]
    assert len(seen) == 3, monitor.log.toPlainText()
    window.ask_save_changes = lambda before="quitting": "save"
    monitor.toggle_pause()             # paused, so that the three short epochs cannot all end before the Stop
    window.close()                                                   # quit during training, saving the project
    assert not window.controller.thread.isRunning()

    project = load_project(tmp_path / "study.dtlproj")
    run_dir = project.current_run
    assert run_dir is not None and run_dir.parent == (tmp_path / "study.runs").resolve()
    log_text = (run_dir / LOG_FILE).read_text(encoding="utf-8")
    assert str(tmp_path) not in log_text and str(Path.home()) not in log_text and "Epoch 1/3:" in log_text

    again = _window(qtbot)
    assert again.open_project(tmp_path / "study.dtlproj")
    monitor = again.training_monitor
    saved = len(RunFolder(run_dir).history())       # epochs saved before quitting (a later one may have been
    assert saved >= max(e.epoch for e in events if isinstance(e, CheckpointSaved))  # saved as the window closed)
    assert monitor.point_counts()["val_loss"] == saved                # the curves are back
    restored = monitor.log.toPlainText()
    for text in seen + ["Training 8 images (validation 4)"]:         # and the log the user saw
        assert text in restored, (text, restored)

    assert "Runs of this project…" in [a.text().replace("&", "") for a in again.menuBar().actions()[0].menu().actions()]
    monitor.show_runs()
    dialog = again.findChild(QDialog, "runsDialog")
    assert [(run.path, run.status, run.epochs) for run in dialog.runs] == [(run_dir, "interrupted", saved)]
    assert dialog.table.item(0, 1).text() == "interrupted" and "validation accuracy" in dialog.table.item(0, 4).text()
    monitor.log.clear()
    dialog.select(run_dir)                                            # selecting shows its curves and log
    assert "Epoch 1/3:" in monitor.log.toPlainText() and monitor.point_counts()["val_loss"] == saved
    qtbot.waitUntil(dialog.resume_button.isEnabled, timeout=60_000)  # once the project's dataset is imported
    with qtbot.waitSignal(monitor.sig_training_finished, timeout=TRAIN_TIMEOUT_MS) as finished:
        dialog.resume_button.click()
    assert finished.args[0].completed and finished.args[0].epochs_done == 3
    assert f"resuming at epoch {saved + 1}" in monitor.log.toPlainText()
    assert [(run.status, run.epochs) for run in dialog.runs] == [("finished", 3)]
    assert dialog.table.item(0, 4).text().startswith("test accuracy")
    log_text = (run_dir / LOG_FILE).read_text(encoding="utf-8")
    assert f"resuming at epoch {saved + 1}" in log_text and "Finished: best epoch" in log_text
    assert str(tmp_path) not in log_text
    again.close()
