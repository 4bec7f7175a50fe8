"""The training loop with real weights and real images: events, stop, resume, transfer."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.events import BatchProgress, CheckpointSaved, EpochEnd, Failed, Finished, RunStarted
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import create_run, open_run
from desktop_tl.core.training.finetune import lr_factor
from desktop_tl.core.training.run import RunControl, train_run

from helpers import copy_demo_subset, train_until_saved

SPLIT = SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=3)


def _config(**overrides) -> TrainConfig:
    base = dict(recipe="custom", epochs=2, batch_size=8, image_size=64, num_workers=0, augment="light", freeze="last:1")
    base.update(overrides)
    return TrainConfig(**base)


def test_events_checkpoints_and_metrics(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics) >= {"classes", "val", "test"}
    for split in ("val", "test"):
        assert set(metrics[split]) >= {"accuracy", "balanced_accuracy", "macro_f1", "confusion_matrix", "per_class"}
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == metrics["test"]["images"] > 0
    assert open_run(trained_run).finished
    meta = checkpoint.read_meta(trained_run / checkpoint.BEST)
    assert meta["classes"] == metrics["classes"] and meta["preprocessing"]["input_size"] == [64, 64]
    run_text = (trained_run / "run.json").read_text() + (trained_run / "dataset.json").read_text()
    assert str(trained_run.parent) not in run_text and '"/' not in run_text


def test_event_stream_shape(tmp_path, small_dataset):
    create_run(tmp_path / "run", small_dataset, _config(epochs=2), SPLIT)
    events = list(train_run(tmp_path / "run"))
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], Finished)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2]
    batches = [e for e in events if isinstance(e, BatchProgress)]
    assert batches and all(e.images_per_sec > 0 and e.eta_seconds >= 0 for e in batches)
    assert batches[-1].eta_seconds < batches[0].eta_seconds or len(batches) == 1
    assert {e.name for e in events if isinstance(e, CheckpointSaved)} >= {"last.safetensors", "best.safetensors"}
    assert events[-1].completed and events[-1].metrics["test"]["images"] > 0


def test_stop_flag_is_checked_every_batch(tmp_path, small_dataset):
    create_run(tmp_path / "run", small_dataset, _config(epochs=3, batch_size=4), SPLIT)
    control = RunControl()
    seen = []
    for event in train_run(tmp_path / "run", control):
        seen.append(event)
        if isinstance(event, BatchProgress) and event.epoch == 2 and event.batch == 2:
            control.stop()
    after_stop = seen[next(i for i, e in enumerate(seen) if isinstance(e, BatchProgress) and e.epoch == 2 and e.batch == 2) + 1:]
    assert not any(isinstance(e, BatchProgress) for e in after_stop)
    assert isinstance(seen[-1], Finished) and seen[-1].stopped_by_user and seen[-1].epochs_done == 1
    assert not open_run(tmp_path / "run").finished and not (tmp_path / "run" / "metrics.json").exists()


def test_pause_blocks_until_continued(tmp_path, small_dataset):
    create_run(tmp_path / "run", small_dataset, _config(epochs=1, batch_size=4, freeze="head"), SPLIT)
    control = RunControl()
    control.pause(True)
    released = []
    timer = threading.Timer(0.5, lambda: released.append(time.monotonic()) or control.pause(False))
    timer.start()
    trained_while_paused, first_batch = 0, None
    events = []
    for event in train_run(tmp_path / "run", control):
        events.append(event)
        if isinstance(event, BatchProgress):
            first_batch = first_batch or time.monotonic()
            trained_while_paused += control.pause_event.is_set()
    timer.join()
    assert trained_while_paused == 0 and released and first_batch >= released[0]
    assert isinstance(events[-1], Finished) and events[-1].completed


def test_resume_continues_exactly(tmp_path, small_dataset):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    for run in (straight, interrupted):
        create_run(run, small_dataset, _config(epochs=2), SPLIT)
    list(train_run(straight))
    train_until_saved(interrupted)
    assert checkpoint.read_meta(interrupted / checkpoint.LAST)["epoch"] == 1
    assert open_run(interrupted).status == "interrupted"          # not "running" once it has stopped
    events = list(train_run(interrupted))
    assert isinstance(events[0], RunStarted) and events[0].start_epoch == 2
    a = load_file(straight / checkpoint.LAST)
    b = load_file(interrupted / checkpoint.LAST)
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())
    assert worst <= 1e-6, worst
    # A finished run says so and does nothing.
    again = list(train_run(interrupted))
    assert len(again) == 1 and isinstance(again[0], Finished) and again[0].metrics is None


def test_same_seed_same_result(tmp_path, small_dataset):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        create_run(run, small_dataset, _config(epochs=1), SPLIT)
        list(train_run(run))
    a, b = (load_file(r / checkpoint.LAST) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_dataset_fails_with_a_message(tmp_path, small_dataset):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    create_run(tmp_path / "run", data, _config(epochs=1), SPLIT)
    shutil.rmtree(data)
    events = list(train_run(tmp_path / "run"))
    assert isinstance(events[-1], Failed)
    assert "data folder of this run is gone" in events[-1].what and str(data) in events[-1].what
    assert "Put the images back" in events[-1].hint


def test_lr_schedule_warms_up_then_decays():
    values = [lr_factor(s, 100, 10) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(values[10:], values[11:])) and values[-1] < 0.05


def test_pretrained_head_beats_random_init_at_the_same_budget(tmp_path):
    data = copy_demo_subset(tmp_path / "data", 20)
    split = SplitConfig(val_fraction=0.2, test_fraction=0.25, seed=0)
    scores = {}
    for weights, freeze in (("bundled", "head"), ("none", "all")):
        run = tmp_path / weights
        create_run(run, data, TrainConfig(recipe="custom", epochs=3, batch_size=16, image_size=96, num_workers=0, lr=3e-3,
                                          weights=weights, freeze=freeze, augment="none"), split)
        finished = list(train_run(run))[-1]
        scores[weights] = finished.metrics["test"]["accuracy"]
    assert scores["bundled"] >= 0.85, scores
    assert scores["bundled"] - scores["none"] >= 0.25, scores


def test_out_of_memory_halves_the_micro_batch_and_goes_on(tmp_path, small_dataset, monkeypatch):
    import timm.models.efficientnet as effnet

    real_forward = effnet.EfficientNet.forward

    def forward_with_small_memory(self, x):
        if self.training and x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, x)

    monkeypatch.setattr(effnet.EfficientNet, "forward", forward_with_small_memory)
    create_run(tmp_path / "run", small_dataset, _config(epochs=1, batch_size=8), SPLIT)
    events = list(train_run(tmp_path / "run"))
    notes = [e.text for e in events if getattr(e, "level", None) == "warning" and "Out of memory" in e.text]
    assert notes[:2] == [
        "Out of memory: now processing 4 image(s) at a time (gradients accumulated to the batch size 8).",
        "Out of memory: now processing 2 image(s) at a time (gradients accumulated to the batch size 8).",
    ]
    assert isinstance(events[-1], Finished) and events[-1].completed
    assert checkpoint.read_meta(tmp_path / "run" / checkpoint.LAST)["micro_batch"] == 2


def test_out_of_memory_at_one_image_is_a_clear_failure(tmp_path, small_dataset, monkeypatch):
    import timm.models.efficientnet as effnet

    def always_out_of_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(effnet.EfficientNet, "forward", always_out_of_memory)
    create_run(tmp_path / "run", small_dataset, _config(epochs=1, batch_size=4), SPLIT)
    events = list(train_run(tmp_path / "run"))
    assert isinstance(events[-1], Failed) and "one image at a time" in events[-1].what
