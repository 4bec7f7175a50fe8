"""The run controller alone, without the panel: the rule for whether a run may start in a folder, and a run
started, paused and stopped on the worker, told through its signals."""

from __future__ import annotations

import json

from desktop_tl.gui.training.run_controller import RunController

TRAIN_TIMEOUT_MS = 180_000


def test_refusals_follow_the_run_folder_rule(qtbot, app_state, controller, tmp_path):
    runner = RunController(app_state, controller, lambda: tmp_path / "runs")
    refusal = runner.start(None)
    assert refusal is not None and refusal.what == "No dataset imported yet." and runner.active_run is None
    occupied = tmp_path / "notes"
    occupied.mkdir()
    (occupied / "letter.txt").write_text("not a run")
    action, refusal = runner.start_action(occupied)
    assert action == "refused" and refusal is not None
    finished = tmp_path / "done"
    finished.mkdir()
    (finished / "run.json").write_text(json.dumps({"status": "finished"}))
    action, refusal = runner.start_action(finished)
    assert refusal is not None and ("finished run" in refusal.what or action == "refused")
    assert not runner.toggle_pause() and not runner.stop()          # nothing to pause or stop


def test_a_run_starts_pauses_and_stops_through_its_signals(qtbot, app_state, controller, tiny_index, fast_config,
                                                           tmp_path):
    app_state.set_dataset(tiny_index)
    fast_config(app_state, epochs=3)
    runner = RunController(app_state, controller, lambda: tmp_path / "runs")
    events = []
    runner.sig_event.connect(events.append)
    with qtbot.waitSignal(runner.sig_started, timeout=10_000) as started:
        assert runner.start(None) is None
    run_dir, resumed = started.args
    assert runner.active_run == run_dir and not resumed and run_dir.parent == tmp_path / "runs"
    assert runner.start(None) is not None                         # one run at a time
    assert runner.toggle_pause() and runner.paused
    assert not runner.toggle_pause() and not runner.paused
    with qtbot.waitSignal(runner.sig_ended, timeout=TRAIN_TIMEOUT_MS) as ended:
        assert runner.stop()
    label, finished, failed = ended.args
    assert label in ("Stopped", "Finished") and failed is None and runner.active_run is None
    assert finished is not None and app_state.run_dir == run_dir and events
