"""Faults while working: a full disk, a read-only folder, images that vanish mid-run, and a stop
(or Ctrl+C) at every stage. Each gives a clear error, never a false "saved", and keeps every
finished epoch loadable and resumable."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal

import pytest
from safetensors import SafetensorError

from desktop_tl.cli import main
from desktop_tl.core import atomic
from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.errors import Cancelled, UserError
from desktop_tl.core.events import CheckpointSaved, EpochEnd, Failed, Finished, Message, RunStarted
from desktop_tl.core.models import weight_files
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import METRICS_FILE, create_run, load_index, open_run
from desktop_tl.core.training.run import train_run

from helpers import train_until_saved
from rel_support import copy_demo, files_under, is_root

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SPLIT = SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=2)
# A tiny timm test network without pretrained weights: these tests are about files, not about learning.
SMALL = ["--model", "test_efficientnet", "--weights", "none", "--batch-size", "4", "--image-size", "32",
         "--workers", "0", "--augment", "none", "--val-fraction", "0.25", "--test-fraction", "0.25"]


def _config(epochs=2, **kw):
    base = dict(recipe="custom", model="test_efficientnet", weights="none", epochs=epochs, batch_size=4, image_size=32, num_workers=0,
                augment="none")
    return TrainConfig(**dict(base, **kw))


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    copy_demo(root, 8, ("brick", "coins"))
    return root


def _snapshot(run):
    return {p.name: p.read_bytes() for p in files_under(run)}


def _temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def _train_until(run, stop_at):
    """Drive train_run until `stop_at(event)` is true; returns (events so far, the live generator)."""
    events, gen = [], train_run(run)
    for event in gen:
        events.append(event)
        if stop_at(event):
            break
    return events, gen


# --- disk full -------------------------------------------------------------------------------------


def test_real_file_size_limit_during_a_checkpoint_write(tmp_path, data):
    """A genuine write failure (RLIMIT_FSIZE: the kernel refuses the bytes), not a mock."""
    run = tmp_path / "run"
    create_run(run, data, _config(epochs=2), SPLIT)
    events, gen = _train_until(run, lambda e: isinstance(e, EpochEnd) and e.epoch == 2)
    epoch1 = checkpoint.read_meta(run / checkpoint.LAST)["epoch"]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # far less than a checkpoint (~0.8 MB)
    try:
        rest = list(gen)  # epoch 2's save fails
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert epoch1 == 1
    assert not any(isinstance(e, CheckpointSaved) for e in rest)
    assert isinstance(rest[-1], Failed), rest[-1]
    assert "Could not save" in rest[-1].what and ".safetensors" in rest[-1].what and "too large" in rest[-1].what
    assert "disk" in rest[-1].hint
    assert checkpoint.load_checkpoint(run / checkpoint.LAST).meta["epoch"] == 1  # previous one intact
    assert not _temp_files(run)
    final = list(train_run(run))[-1]  # once there is room again, resume completes
    assert isinstance(final, Finished) and final.completed and final.epochs_done == 2


def test_disk_full_in_the_cli_is_exit_2_and_no_saved_message(tmp_path, data, capsys, monkeypatch):
    """ENOSPC as safetensors reports it (SafetensorError), after part of the file was written."""
    run = tmp_path / "run"
    real_save = weight_files.save_file
    calls = []

    def full_disk(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) > 2:  # epoch 1's last and best go through, epoch 2's last does not
            with open(filename, "wb") as fh:
                fh.write(b"\0" * 4096)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(weight_files, "save_file", full_disk)
    assert main(["train", str(data), "--out", str(run), "--epochs", "2", *SMALL]) == 2
    captured = capsys.readouterr()
    assert "No space left on device" in captured.err and "What to do" in captured.err
    assert "Traceback" not in captured.err and "Saved in" not in captured.out
    assert "epoch 2/2" in captured.out  # it failed while saving epoch 2
    assert checkpoint.load_checkpoint(run / checkpoint.LAST).meta["epoch"] == 1
    assert checkpoint.load_checkpoint(run / checkpoint.BEST).meta["epoch"] == 1
    assert not _temp_files(run) and not (run / METRICS_FILE).exists()
    monkeypatch.setattr(weight_files, "save_file", real_save)
    assert main(["train", "ignored", "--out", str(run), "--resume"]) == 0
    assert "resuming at epoch 2" in capsys.readouterr().out


def test_disk_full_while_importing_weights_is_a_clear_error(tmp_path, monkeypatch):
    import torch

    from desktop_tl.core.models import store as weights
    from desktop_tl.core.models.factory import create_model

    model, _ = create_model("efficientnet_lite0", "none", 1000)
    source = tmp_path / "lite0.pth"
    torch.save(model.state_dict(), source)

    def full_disk(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(weight_files, "save_file", full_disk)
    with pytest.raises(UserError, match="No space left on device"):
        weights.import_weights(source, "efficientnet_lite0")
    assert weights.list_imported() == []


# --- read-only output folder ------------------------------------------------------------------------


@contextlib.contextmanager
def read_only(folder):
    """chmod when it bites; as root (where it does not) the writes fail as on a read-only mount."""
    if not is_root():
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(atomic.tempfile, "mkstemp", refuse)
        patch.setattr(atomic.os, "replace", refuse)
        yield


def test_read_only_folders(tmp_path, data, capsys):
    # A new run in a read-only place: refused before anything happens.
    (tmp_path / "locked").mkdir()
    with read_only(tmp_path / "locked"):
        assert main(["train", str(data), "--out", str(tmp_path / "locked" / "run"), "--epochs", "1", *SMALL]) == 2
    err = capsys.readouterr().err
    assert ("Read-only file system" in err or "Permission denied" in err) and "What to do" in err

    # A run whose folder turns read-only after epoch 1: training stops with a message, epoch 1 stays.
    run = tmp_path / "run"
    create_run(run, data, _config(epochs=2), SPLIT)
    events, gen = _train_until(run, lambda e: isinstance(e, EpochEnd) and e.epoch == 2)
    before = _snapshot(run)
    with read_only(run):
        rest = list(gen)
    assert isinstance(rest[-1], Failed) and ".safetensors" in rest[-1].what
    assert not any(isinstance(e, CheckpointSaved) for e in rest)
    assert _snapshot(run) == before
    assert checkpoint.load_checkpoint(run / checkpoint.LAST).meta["epoch"] == 1

    # Export into a read-only folder: exit 2, no "Exported" line, nothing left behind.
    out = tmp_path / "exports"
    out.mkdir()
    with read_only(out):
        assert main(["export", str(run), "--out", str(out / "model.onnx")]) == 2
    captured = capsys.readouterr()
    assert "Exported" not in captured.out and "What to do" in captured.err
    assert list(out.iterdir()) == [] and _snapshot(run) == before
    assert main(["train", "ignored", "--out", str(run), "--resume"]) == 0


# --- images that vanish or break after import ---------------------------------------------------------


def test_images_deleted_or_corrupted_after_import(tmp_path, data):
    run = tmp_path / "run"
    _, index = create_run(run, data, _config(epochs=2), SPLIT)
    train = [index.abs_path(s) for s in index.split("train")]
    train[0].unlink()
    train[1].write_bytes(train[1].read_bytes()[:300])  # now a truncated JPEG
    events = []
    for event in train_run(run):
        events.append(event)
        if isinstance(event, RunStarted):
            train[2].unlink()  # gone while the run is under way
        if isinstance(event, EpochEnd) and event.epoch == 1:
            train[3].unlink()
            index.abs_path(index.split("val")[0]).write_bytes(b"")
    warnings = [e.text for e in events if isinstance(e, Message) and "could not be read any more" in e.text]
    assert warnings, [e for e in events if isinstance(e, Message)]
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    metrics = json.loads((run / METRICS_FILE).read_text())
    # At least the three unreadable in epoch 1 (a decode cache may still serve later epochs).
    assert metrics["skipped_during_training"] >= 3
    assert metrics["val"]["images"] == len(index.split("val")) - 1  # the emptied val image is left out
    assert checkpoint.load_checkpoint(run / checkpoint.BEST).meta["epoch"] in (1, 2)


def test_every_training_image_gone_is_a_clear_failure(tmp_path, data, capsys):
    run = tmp_path / "run"
    _, index = create_run(run, data, _config(epochs=1), SPLIT)
    for sample in index.split("train"):
        index.abs_path(sample).unlink()
    assert main(["train", "ignored", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "No training image could be read" in err and "Traceback" not in err


# --- stop (or Ctrl+C) at every stage --------------------------------------------------------------------


def test_stop_at_every_stage_leaves_a_consistent_run(tmp_path, data, capsys, monkeypatch):
    run = tmp_path / "run"
    # Import: cancelled after a few files; nothing is written.
    calls = []
    with pytest.raises(Cancelled):
        create_run(run, data, _config(), SPLIT, should_stop=lambda: calls.append(1) or len(calls) > 5)
    assert not run.exists()

    # Training: stopped in epoch 2; epoch 1 is kept and the run is not marked finished.
    create_run(run, data, _config(epochs=2), SPLIT)
    events = train_until_saved(run)
    assert isinstance(events[-1], Finished) and events[-1].stopped_by_user and events[-1].epochs_done == 1
    assert open_run(run).status == "interrupted" and not (run / METRICS_FILE).exists()
    state = _snapshot(run)

    # Evaluation: Ctrl+C in the middle (while the test split is scored) changes nothing.
    from desktop_tl.core.evaluation import splits as evaluation_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(evaluation_run, "compute_metrics", interrupted)
        assert main(["evaluate", str(run)]) == 130
    assert _snapshot(run) == state

    # Export: Ctrl+C while the graph is exported, and (the last step) while model.onnx is moved into place.
    import torch

    with monkeypatch.context() as patch:
        patch.setattr(torch.onnx, "export", interrupted)
        assert main(["export", str(run)]) == 130
    real_replace = os.replace

    def interrupted_replace(src, dst):
        if str(dst).endswith("model.onnx"):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(atomic.os, "replace", interrupted_replace)
        atomic.atomic_write_bytes(run / "model.onnx", b"\0" * 100_000)
    assert _snapshot(run) == state  # no model.onnx, no export.json, no temp file
    capsys.readouterr()

    # After all of that the run resumes from epoch 2 and completes.
    assert main(["train", "ignored", "--out", str(run), "--resume"]) == 0
    assert "resuming at epoch 2" in capsys.readouterr().out
    assert open_run(run).finished and load_index(run)
