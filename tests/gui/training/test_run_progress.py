"""The Training panel's pieces on their own: the progress line (preparing, per batch and refit, paused,
stopping, the end), the run-folder row, and the names and lines of its jobs."""

from __future__ import annotations

from pathlib import Path

from desktop_tl.core.events import BatchProgress
from desktop_tl.gui.training.run_folder_picker import RunFolderPicker
from desktop_tl.gui.training.run_progress import RunProgress
from desktop_tl.gui.training.training_jobs import new_run_dir, run_summary


def test_the_progress_line_says_where_the_run_stands(qtbot):
    bar = RunProgress()
    qtbot.addWidget(bar)
    bar.note("ignored while idle")
    assert bar.format() == "Idle"
    bar.preparing()
    bar.note("Planning the run: measuring how fast this computer runs efficientnet_lite0…")
    assert bar.format().startswith("Preparing… Planning the run")
    bar.batch(BatchProgress(2, 4, 3, 6, 0.5, 0.8, 1e-3, 12.5, 45.0), paused=False)
    assert bar.format() == "Epoch 2/4 · batch 3/6 · 12.5 img/s · ETA about 45 s" and bar.value() == 375
    bar.set_paused(True)
    assert bar.format().startswith("Paused — Epoch 2/4")
    bar.set_paused(False)
    assert bar.format().startswith("Epoch 2/4")
    bar.batch(BatchProgress(1, 3, 1, 2, 0.4, 0.9, 1e-3, 20.0, 30.0, phase="refit"), paused=True)
    assert bar.format().startswith("Paused — Training again on train+val, epoch 1/3 · batch 1/2")
    bar.stopping()
    assert bar.format() == "Stopping after the current batch…"
    bar.ended("Finished")
    assert bar.format() == "Finished" and bar.value() == bar.maximum()
    bar.idle()
    assert (bar.format(), bar.value()) == ("Idle", 0)


def test_run_folders_get_fresh_names_and_an_opened_run_one_line(tmp_path):
    first = new_run_dir(tmp_path)
    first.mkdir()
    assert new_run_dir(tmp_path) != first and new_run_dir(tmp_path).name.startswith(first.name)
    history = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.3}]
    assert run_summary("interrupted", history, "run-a") == ("Run run-a: interrupted; press Resume to continue it; "
                                                           "2 epochs saved, best validation loss 0.300 at epoch 2.")


def test_the_run_folder_row_says_once_typing_pauses_and_opens_the_runs_list(qtbot, tmp_path):
    picker = RunFolderPicker(lambda: tmp_path)
    qtbot.addWidget(picker)
    asked = []
    picker.sig_runs_requested.connect(lambda: asked.append(True))
    assert picker.chosen() is None
    with qtbot.waitSignal(picker.sig_changed, timeout=2000):
        qtbot.keyClicks(picker.run_folder, "~/runs/first")            # said once typing pauses
    assert picker.chosen() == Path.home() / "runs" / "first"
    picker.set_folder(tmp_path / "other")
    assert picker.run_folder.text() == str(tmp_path / "other")
    picker.runs_button.click()
    assert asked == [True]
