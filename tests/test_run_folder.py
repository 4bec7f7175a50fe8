"""One rule for where a run may train and where its model is, as the CLI and the window both apply it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.errors import UserError
from desktop_tl.core.runs.folder import EXPORT_FILE, LAST_CHECKPOINT, RunFolder, RunInfo, write_run_info


def _folder(tmp_path: Path, status: str) -> RunFolder:
    """A run folder in `status` (RunFolder's words), made of the files that decide it."""
    path = tmp_path / status
    if status == "occupied":
        path.mkdir()
        (path / "holiday.jpg").write_bytes(b"a user's own file")
    elif status == "damaged":
        path.mkdir()
        (path / "run.json").write_text("{not json")
    elif status != "new":
        path.mkdir()
        write_run_info(RunInfo(path, TrainConfig(), SplitConfig(), ["a", "b"],
                               "finished" if status == "finished" else "created"))
        if status in ("interrupted", "finished"):
            (path / LAST_CHECKPOINT).write_bytes(b"an epoch")
    folder = RunFolder(path)
    assert folder.status() == status
    return folder


@pytest.mark.parametrize(("status", "resume", "action"), [
    ("new", False, "start"), ("new", True, "start"),            # --resume on a folder with no run starts it
    ("created", False, "start"), ("created", True, "resume"),   # nothing trained yet: settings may be replaced
    ("interrupted", True, "resume"), ("finished", True, "finished"),
])
def test_where_a_run_may_train(tmp_path, status, resume, action):
    assert _folder(tmp_path, status).training_start(resume) == action


@pytest.mark.parametrize(("status", "resume", "words"), [
    ("interrupted", False, "already holds a run"), ("finished", False, "already holds a finished run"),
    ("occupied", False, "other files"), ("occupied", True, "other files"),
    ("damaged", False, "damaged"), ("damaged", True, "damaged"),
])
def test_where_a_run_may_not_train(tmp_path, status, resume, words):
    with pytest.raises(UserError, match=words):
        _folder(tmp_path, status).training_start(resume)


def test_resumable_statuses_are_the_ones_training_continues(tmp_path):
    for status in RunFolder.STATUSES:
        folder = _folder(tmp_path, status)
        assert folder.resumable == (status in RunFolder.RESUMABLE)


def test_the_exported_model_is_found_from_the_export_record(tmp_path):
    folder = _folder(tmp_path, "finished")
    assert folder.exported_model() is None and folder.model_file == folder.path / "model.onnx"
    (folder.path / EXPORT_FILE).write_text(json.dumps({"onnx_file": "model.onnx"}))
    assert folder.exported_model() is None                      # named, but not there (deleted, moved)
    folder.model_file.write_bytes(b"onnx")
    assert folder.exported_model() == folder.model_file
    assert folder.exported_file("elsewhere/x.onnx") == Path("elsewhere/x.onnx")   # a path stays as the user gave it
    assert folder.exported_file("/abs/x.onnx") == Path("/abs/x.onnx")
