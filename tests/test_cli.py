"""The headless CLI: real commands, clear errors with exit status 2, resume conventions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from desktop_tl.cli import main

FAST = ["--epochs", "1", "--batch-size", "8", "--image-size", "64", "--workers", "0", "--augment", "none"]


def test_models_lists_the_bundled_backbone(capsys):
    assert main(["models", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert "efficientnet_lite0" in entries and "resnet50" in entries
    assert entries["efficientnet_lite0"]["weights"][0]["source"] == "bundled"
    assert main(["models"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out


def test_import_check_reports_classes(small_dataset, capsys):
    assert main(["import-check", str(small_dataset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert str(small_dataset) not in json.dumps(report)


@pytest.mark.parametrize("argv, needle", [
    (["train", "{missing}", "--out", "{out}"], "does not exist"),
    (["train", "{data}", "--out", "{out}", "--epochs", "0"], "--epochs"),
    (["train", "{data}", "--out", "{out}", "--model", "no_such_net"], "no_such_net"),
    (["train", "{data}", "--out", "{out}", "--freeze", "bogus"], "freeze"),
    (["evaluate", "{out}"], "holds no desktop_tl run"),
    (["export", "{out}"], "holds no desktop_tl run"),
    (["predict", "{out}/none.onnx", "{data}"], "No model file"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, small_dataset, capsys, argv, needle):
    argv = [a.format(missing=tmp_path / "missing", out=tmp_path / "out", data=small_dataset) for a in argv]
    assert main(argv + (FAST[2:] if argv[0] == "train" and "--epochs" not in argv else [])) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and "What to do" in err


def test_train_resume_evaluate_export(tmp_path, small_dataset, capsys):
    out = tmp_path / "run"
    assert main(["train", str(small_dataset), "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "test (" in text and "accuracy" in text
    assert main(["train", str(small_dataset), "--out", str(out), *FAST]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["train", str(small_dataset), "--out", str(out), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == "best"
    assert main(["export", str(out)]) == 0
    assert "OK" in capsys.readouterr().out and (out / "model.onnx").is_file()


def test_train_refuses_a_folder_of_other_files_as_the_window_does(tmp_path, small_dataset, capsys):
    photos = tmp_path / "my_photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"not to be mixed with a run")
    for resume in ([], ["--resume"]):
        assert main(["train", str(small_dataset), "--out", str(photos), *FAST, *resume]) == 2
        assert "already holds other files" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == ["holiday.jpg"]


def test_resume_on_an_empty_folder_starts_the_run(tmp_path, small_dataset, capsys):
    assert main(["train", str(small_dataset), "--out", str(tmp_path / "fresh"), *FAST, "--resume"]) == 0
    assert "from the start" in capsys.readouterr().out


def test_moved_dataset_can_be_given_to_evaluate(tmp_path, small_dataset, capsys):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), *FAST]) == 0
    data.rename(tmp_path / "moved")
    assert main(["evaluate", str(out)]) == 2
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(tmp_path / "moved")]) == 0


def test_python_dash_m_runs_the_same_entry_point():
    done = subprocess.run([sys.executable, "-m", "desktop_tl", "predict", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--csv" in done.stdout
