"""The run's log (core.runs.run_log) and a project's runs list (core.runs.listing), without training."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.events import BatchProgress, EpochEnd, Failed, Message, RunStarted
from desktop_tl.core.runs.folder import LAST_CHECKPOINT, METRICS_FILE, create_run
from desktop_tl.core.runs.listing import find_runs, summarize_run
from desktop_tl.core.runs.run_log import LOG_FILE, MAX_READ_BYTES, RunLog, logged, read_log

from helpers import copy_demo_subset

HISTORY = [{"epoch": 1, "val_loss": 0.9, "val_accuracy": 0.6}, {"epoch": 2, "val_loss": 0.5, "val_accuracy": 0.8},
           {"epoch": 3, "val_loss": 0.7, "val_accuracy": 0.85}]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return copy_demo_subset(tmp_path_factory.mktemp("study") / "data", per_class=4)


def _run(dataset: Path, run_dir: Path, **config) -> Path:
    index = import_dataset(dataset, SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0))
    create_run(run_dir, index, TrainConfig(**config), SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0))
    return run_dir


def _interrupt(run_dir: Path, history: list[dict]) -> None:
    """A last checkpoint whose header holds `history`, as the engine writes it (the tensors do not matter here)."""
    save_file({"w": np.zeros(1, dtype=np.float32)}, str(run_dir / LAST_CHECKPOINT),
              metadata={"desktop_tl": json.dumps({"history": history})})


def test_entries_are_appended_with_time_and_read_back(tmp_path):
    log = RunLog(tmp_path)
    assert log.write("Plan:\n- fine-tune the head\n- 3 epochs") and log.write("Epoch 1/3: train loss 0.500")
    lines = read_log(tmp_path)
    assert len(lines) == 4 and lines[0].endswith("  Plan:") and lines[3].endswith("  Epoch 1/3: train loss 0.500")
    assert lines[1].startswith(" " * 21 + "- fine-tune")                 # continuation lines under the first
    assert read_log(tmp_path, max_lines=2) == lines[2:]


def test_absolute_paths_never_reach_the_log(tmp_path, dataset, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    run_dir = _run(dataset, tmp_path / "runs" / "run-1")
    log = RunLog(run_dir)
    log.write(f"Error: {run_dir / 'run.json'} is damaged. What to do: see {dataset / 'cat' / 'x.jpg'}.")
    log.write(f"Note: cache in {tmp_path / 'home' / 'cache'}; weights {Path('/opt/models/w.safetensors')}; "
              r"and C:\Users\someone\w.pt")
    log.write("Epoch 2/5 at 12.5 img/s, train/val/test split, loss 0.5 / 0.7")
    text = (run_dir / LOG_FILE).read_text()
    assert str(tmp_path) not in text and "/opt/models" not in text and "Users" not in text
    assert "run-1/run.json is damaged" in text and "data/cat/x.jpg" in text and "~/cache" in text
    assert " w.safetensors" in text and " w.pt" in text
    assert "Epoch 2/5 at 12.5 img/s, train/val/test split, loss 0.5 / 0.7" in text


def test_a_torn_or_huge_or_missing_log_reads_without_error(tmp_path):
    assert read_log(tmp_path / "nowhere") == []
    (tmp_path / LOG_FILE).write_bytes(b"2024-01-01 10:00:00  fine\n2024-01-01 10:00:01  to\xff\x00\x00")
    assert read_log(tmp_path) == ["2024-01-01 10:00:00  fine", "2024-01-01 10:00:01  to\ufffd"]
    line = b"2024-01-01 10:00:00  " + b"x" * 79 + b"\n"
    (tmp_path / LOG_FILE).write_bytes(line * (2 * MAX_READ_BYTES // len(line)))
    lines = read_log(tmp_path)
    assert len(lines) == 5000 and all(len(x) == len(line) - 1 for x in lines)


def test_a_log_that_cannot_be_written_does_not_stop_the_run(tmp_path):
    assert not RunLog(tmp_path / "gone").write("Epoch 1/1")
    if os.name != "nt" and os.geteuid() != 0:
        tmp_path.chmod(0o500)
        try:
            assert not RunLog(tmp_path).write("Epoch 1/1")
        finally:
            tmp_path.chmod(0o700)


def test_logged_passes_every_event_on_and_writes_what_people_read(tmp_path):
    epoch = EpochEnd(1, 2, 0.5, 0.75, 0.6, 0.7, 1e-3, 2.0, True)
    batch = BatchProgress(1, 2, 1, 4, 0.5, 0.5, 1e-3, 10.0, 30.0)
    closed = []

    def engine():
        try:
            yield RunStarted(2, 1, 10, 4, "CPU", 10, 100, 8)
            yield Message("warning", "Few images.")
            yield batch
            yield epoch
            yield Failed("The disk is full.", "Free some space.")
            yield Message("info", "never reached")
        finally:
            closed.append(True)

    stream = logged(tmp_path, engine())
    seen = [next(stream) for _ in range(5)]
    assert seen[2] is batch and seen[3] is epoch
    stream.close()
    assert closed == [True]                                               # the engine's generator is closed too
    text = "\n".join(read_log(tmp_path))
    assert "Warning: Few images." in text and "Epoch 1/2: train loss 0.500" in text and "(best so far)" in text
    assert "Error: The disk is full. What to do: Free some space." in text
    assert "batch 1/4" not in text and "never reached" not in text


def test_a_run_refused_before_it_starts_leaves_no_log(tmp_path):
    def refused():
        yield Failed("The folder holds no desktop_tl run.", "Pick a run folder.")

    assert [type(e) for e in logged(tmp_path, refused())] == [Failed]
    assert not (tmp_path / LOG_FILE).exists()


def test_runs_list_shows_each_run_once_with_status_recipe_date_and_best_figure(tmp_path, dataset):
    runs = tmp_path / "runs"
    finished = _run(dataset, runs / "a-finished", recipe="custom", model="efficientnet_lite0")
    interrupted = _run(dataset, runs / "b-interrupted")
    created = _run(dataset, runs / "c-created")
    (runs / "not-a-run").mkdir()
    _interrupt(interrupted, HISTORY)
    info = json.loads((finished / "run.json").read_text())
    (finished / "run.json").write_text(json.dumps(dict(info, status="finished")))
    _interrupt(finished, HISTORY)
    (finished / METRICS_FILE).write_text(json.dumps({"history": HISTORY, "test": {"images": 4, "accuracy": 0.75}}))
    elsewhere = _run(dataset, tmp_path / "elsewhere" / "d-recorded")
    (elsewhere / "run.json").write_text("{ damaged")
    for age, run in enumerate((created, interrupted, finished, elsewhere)):   # created newest, elsewhere oldest
        os.utime(run / "dataset.json", (1_700_000_000 - age * 60,) * 2)

    listed = find_runs([elsewhere, interrupted, tmp_path / "moved-away"], runs)
    assert [r.path.name for r in listed] == ["c-created", "b-interrupted", "a-finished", "d-recorded", "moved-away"]
    by_name = {r.path.name: r for r in listed}
    assert by_name["a-finished"].status == "finished" and by_name["a-finished"].best == "test accuracy 75.0%"
    assert by_name["a-finished"].recipe == "custom, efficientnet_lite0" and by_name["a-finished"].epochs == 3
    assert by_name["b-interrupted"].status == "interrupted" and by_name["b-interrupted"].resumable
    assert by_name["b-interrupted"].best == "validation accuracy 80.0% (epoch 2)"      # the lowest validation loss
    assert by_name["c-created"].status == "created" and by_name["c-created"].best == "" and by_name["c-created"].epochs == 0
    assert by_name["d-recorded"].status == "damaged" and by_name["d-recorded"].recipe == ""
    assert by_name["moved-away"].status == "missing" and by_name["moved-away"].created is None
    assert math.isclose(by_name["c-created"].created, 1_700_000_000)
    assert summarize_run(interrupted) == by_name["b-interrupted"]
    assert find_runs([], tmp_path / "no-runs-folder") == []
