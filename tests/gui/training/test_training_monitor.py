"""Training monitor with real training: curves, Stop within one batch, Pause, responsiveness, failures."""

from __future__ import annotations

import json
import time

import pytest
from PySide6.QtCore import Qt, QTimer

from desktop_tl.core.errors import UserError
from desktop_tl.core.events import BatchProgress, EpochEnd, Finished
from desktop_tl.core.reporting import clock as format_duration
from desktop_tl.gui.shell.engine_loader import engine_loaded, start_engine_import
from desktop_tl.gui.training.training_monitor import TrainingMonitor

TRAIN_TIMEOUT_MS = 180_000


@pytest.fixture
def monitor(qtbot, app_state, controller, tiny_index, fast_config, tmp_path):
    app_state.set_dataset(tiny_index)
    fast_config(app_state)
    widget = TrainingMonitor(app_state, controller)
    app_state.set_project_file(tmp_path / "project.dtlproj")
    qtbot.addWidget(widget)
    widget.resize(900, 650)
    widget.show()
    yield widget
    if widget.active_run is not None:        # a failed assertion mid-run: stop before the thread check
        widget.stop()
        qtbot.waitUntil(lambda: not controller.busy, timeout=TRAIN_TIMEOUT_MS)


def _batches(controller) -> list[BatchProgress]:
    seen: list[BatchProgress] = []
    controller.sig_event.connect(lambda event: seen.append(event) if isinstance(event, BatchProgress) else None)
    return seen


def _emitted_while(controller, flag: str) -> list[BatchProgress]:
    """Batches the worker finished while its stop/pause flag was set (recorded on the worker thread itself)."""
    seen: list[BatchProgress] = []

    def on_emit(event) -> None:
        context = controller.worker.context
        if isinstance(event, BatchProgress) and context is not None and getattr(context.control, flag).is_set():
            seen.append(event)

    controller.worker.sig_event.connect(on_emit, Qt.ConnectionType.DirectConnection)
    return seen


def test_form_shows_device_and_writes_config(monitor, app_state):
    assert monitor.device.itemText(0).startswith("auto (")
    assert monitor.device.itemData(0) == "auto"
    monitor.epochs.setValue(3)
    monitor.image_size.setValue(0)
    monitor.augment.setCurrentText("strong")
    assert (app_state.config.epochs, app_state.config.image_size, app_state.config.augment) == (3, None, "strong")
    assert monitor.image_size.text() == "model default"
    monitor.batch_size.setValue(0)
    assert app_state.config.batch_size == 0 and monitor.batch_size.text() == "auto"
    assert format_duration(75) == "1:15" and format_duration(3725) == "1:02:05"
    referral = monitor.settings.referral               # the referral target: off, or an error rate to keep within
    assert app_state.config.refer_target == pytest.approx(0.05) and referral.currentText() == "Keep errors within 5%"
    referral.setCurrentIndex(0)
    assert app_state.config.refer_target == 0.0
    from dataclasses import replace
    app_state.set_config(replace(app_state.config, refer_target=0.03))     # from a project or the CLI
    assert referral.currentText() == "Keep errors within 3.0%"


def test_trains_one_epoch_and_draws_curves(qtbot, monitor, app_state, tmp_path):
    run_dir = tmp_path / "run"
    monitor.set_run_dir(run_dir)
    assert monitor.start_button.text() == "Start"
    texts: list[str] = []        # connected after the monitor: sees the text each batch produced
    monitor.controller.sig_event.connect(
        lambda event: texts.append(monitor.progress.format()) if isinstance(event, BatchProgress) else None)
    with qtbot.waitSignal(monitor.sig_training_finished, timeout=TRAIN_TIMEOUT_MS) as blocker:
        monitor.start_button.click()
        assert not monitor.start_button.isEnabled() and monitor.stop_button.isEnabled()
    finished: Finished = blocker.args[0]
    assert finished.completed and finished.metrics is not None
    assert texts and all("img/s" in t and "ETA" in t and "Epoch 1/1" in t for t in texts), texts
    counts = monitor.point_counts()
    assert counts["batch_loss"] == counts["batch_accuracy"] == 2      # 8 training images, batch 4
    assert counts["train_loss"] == counts["val_loss"] == counts["val_accuracy"] == 1
    x, _ = monitor.curves["batch_loss"].getData()
    assert x.dtype.name == "float64" and x[0] == pytest.approx(0.5) and x[-1] == pytest.approx(1.0)
    assert app_state.run_dir == run_dir and app_state.metrics["test"]["images"] > 0
    assert json.loads((run_dir / "metrics.json").read_text())["classes"] == ["cat", "coffee"]
    log = monitor.log.toPlainText()
    assert "Epoch 1/1" in log and "Finished" in log
    assert monitor.progress.value() == monitor.progress.maximum()
    assert monitor.start_button.isEnabled()             # the worker was free before the result arrived
    assert not monitor.stop_button.isEnabled()
    assert not monitor.banner.isVisible()


def test_stop_is_honoured_within_one_batch_then_resume_continues(qtbot, monitor, app_state, controller,
                                                                   fast_config, tmp_path):
    fast_config(app_state, batch_size=1, epochs=3)                   # 8 batches per epoch
    monitor.load_from_state()
    assert monitor.epochs.value() == 3
    monitor.set_run_dir(tmp_path / "run")
    after_stop = _emitted_while(controller, "stop_event")
    epochs: list[EpochEnd] = []
    controller.sig_event.connect(lambda e: epochs.append(e) if isinstance(e, EpochEnd) else None)
    with qtbot.waitSignal(monitor.sig_training_finished, timeout=TRAIN_TIMEOUT_MS) as blocker:
        monitor.start()
        qtbot.waitUntil(lambda: len(epochs) >= 1, timeout=TRAIN_TIMEOUT_MS)
        monitor.stop_button.click()
    stopped: Finished = blocker.args[0]
    assert stopped.stopped_by_user and not stopped.completed and 1 <= stopped.epochs_done < 3
    assert len(after_stop) <= 1, f"{len(after_stop)} batches trained after Stop"
    assert monitor.progress.format() == "Stopped"
    assert "Stopped after" in monitor.log.toPlainText() and app_state.metrics is None
    assert monitor.start_button.text() == "Resume" and monitor.start_button.isEnabled()

    with qtbot.waitSignal(monitor.sig_training_finished, timeout=TRAIN_TIMEOUT_MS) as blocker:
        monitor.start_button.click()
    assert blocker.args[0].completed and blocker.args[0].epochs_done == 3
    assert monitor.point_counts()["train_loss"] == 3                # earlier epochs from the checkpoint
    assert f"resuming at epoch {stopped.epochs_done + 1}" in monitor.log.toPlainText()
    assert app_state.metrics is not None


def test_pause_holds_training_and_continue_finishes(qtbot, monitor, app_state, controller, fast_config, tmp_path):
    fast_config(app_state, batch_size=1)                             # 8 batches
    monitor.load_from_state()
    monitor.set_run_dir(tmp_path / "run")
    batches = _batches(controller)
    while_paused = _emitted_while(controller, "pause_event")
    monitor.start()
    qtbot.waitUntil(lambda: len(batches) >= 1, timeout=TRAIN_TIMEOUT_MS)
    monitor.pause_button.click()
    assert monitor.paused and monitor.pause_button.text() == "Continue"
    qtbot.wait(2000)
    assert len(while_paused) <= 1, "batches kept coming while paused (more than the one in flight)"
    assert len(batches) < 8 and "Paused" in monitor.progress.format()
    with qtbot.waitSignal(monitor.sig_training_finished, timeout=TRAIN_TIMEOUT_MS) as blocker:
        monitor.pause_button.click()
        assert not monitor.progress.format().startswith("Paused")      # at once, not at the next batch
    assert not monitor.paused and blocker.args[0].completed
    assert len(batches) == 8


def test_window_stays_responsive_while_training(qtbot, monitor, app_state, fast_config, tmp_path, record_property):
    """A 10 ms timer keeps ticking during real training: the longest gap stays under 100 ms.

    The main window imports the engine (torch, timm, torchvision) on a background thread as soon as it is shown
    (gui/engine_loader.py); importing holds the interpreter lock for up to 200 ms at a time, so this stand-alone
    panel waits for the same import first and the gaps measured are those of training."""
    start_engine_import()
    assert engine_loaded.wait(120)
    fast_config(app_state, batch_size=2, epochs=2)                   # 8 batches, 2 validations
    monitor.load_from_state()
    monitor.set_run_dir(tmp_path / "run")
    ticks: list[float] = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    with qtbot.waitSignal(monitor.sig_training_finished, timeout=TRAIN_TIMEOUT_MS):
        monitor.start()
        timer.start()
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(gaps) > 20
    longest = max(gaps)
    record_property("max_timer_gap_ms", round(1000 * longest, 1))
    print(f"\nmax timer gap during training: {1000 * longest:.1f} ms over {len(gaps)} ticks")
    assert longest < 0.100, f"event loop blocked for {1000 * longest:.0f} ms"


def test_engine_failures_show_in_the_panel_and_the_app_keeps_working(qtbot, monitor, app_state, controller,
                                                                     tmp_path, monkeypatch):
    import desktop_tl.core.runs.folder as runs
    import desktop_tl.core.training.run as train

    def broken_train_run(*args, **kwargs):
        raise RuntimeError("simulated engine bug")
        yield  # pragma: no cover - makes this a generator like the real one

    monkeypatch.setattr(train, "train_run", broken_train_run)
    monitor.set_run_dir(tmp_path / "run1")
    with qtbot.waitSignal(monitor.sig_training_failed, timeout=TRAIN_TIMEOUT_MS) as blocker:
        monitor.start()
    assert "simulated engine bug" in blocker.args[0].what
    assert monitor.banner.isVisible() and "simulated engine bug" in monitor.banner.text()
    assert monitor.progress.format() == "Failed"
    assert monitor.start_button.isEnabled()

    def refusing_create_run(*args, **kwargs):
        raise UserError("The disk is full.", "Free some space and press Start again.")

    monkeypatch.setattr(runs, "create_run", refusing_create_run)
    monitor.set_run_dir(tmp_path / "run2")
    with qtbot.waitSignal(monitor.sig_training_failed, timeout=TRAIN_TIMEOUT_MS):
        monitor.start()
    assert "The disk is full." in monitor.banner.text() and "Free some space" in monitor.banner.text()
    assert "What to do" in monitor.log.toPlainText()

    # the worker thread survived: it runs the next job
    with qtbot.waitSignal(controller.sig_result, timeout=10_000) as result:
        assert controller.submit("probe", lambda ctx: 42)
    assert result.args == ["probe", 42]


def test_real_engine_refusal_and_missing_dataset(qtbot, monitor, app_state, tmp_path):
    app_state.update_config(image_size=8)                            # rejected by TrainConfig.validate
    monitor.set_run_dir(tmp_path / "run")
    with qtbot.waitSignal(monitor.sig_training_failed, timeout=TRAIN_TIMEOUT_MS):
        monitor.start()
    assert "image-size" in monitor.banner.text() or "image size" in monitor.banner.text().lower()

    (tmp_path / "my_photos").mkdir()
    (tmp_path / "my_photos" / "holiday.jpg").write_bytes(b"not to be mixed with a run")
    monitor.set_run_dir(tmp_path / "my_photos")
    assert not monitor.start()
    assert "already holds other files" in monitor.banner.text()

    dataset = app_state.dataset
    app_state.set_dataset(None)
    monitor.set_run_dir(tmp_path / "other")
    assert not monitor.start()
    assert "No dataset" in monitor.banner.text() and monitor.banner.isVisible()
    app_state.set_dataset(dataset)                                    # the problem is fixed: the banner goes
    assert monitor.banner.text() == "" and not monitor.banner.isVisible()


def test_a_long_plan_scrolls_in_place_and_the_curves_keep_their_size(qtbot, monitor):
    """The plan arrives as training starts; a re-layout of the plots then would freeze the window ~90 ms."""
    qtbot.wait(50)
    before = monitor.charts.loss_plot.size()
    monitor.settings.show_plan(tuple(f"  {n}. a stage of the plan, described in words" for n in range(1, 13)))
    qtbot.wait(50)
    assert monitor.charts.loss_plot.size() == before
    assert monitor.settings.plan_area.verticalScrollBar().maximum() > 0       # the rest is a scroll away
    assert "12. a stage" in monitor.settings.plan_label.text()
