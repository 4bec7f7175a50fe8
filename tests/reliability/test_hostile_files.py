"""Hostile files are refused with a clear message and leave nothing behind: weights that would
run code, broken safetensors headers, ONNX models that point at other files, damaged checkpoints
and hand-edited run and project files."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import torch

from desktop_tl.cli import main
from desktop_tl.core.errors import UserError
from desktop_tl.core.models.store import import_weights, list_imported
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import DATASET_FILE, RUN_FILE, relative_to_run

from rel_support import FAST, copy_demo, demo_image, files_under

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class _Payload:
    """Unpickling this creates the file `target`: a stand-in for any code a pickle can run."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _evil_weights(path, sentinel, legacy=False):
    state = {"conv_stem.weight": torch.zeros(32, 3, 3, 3), "payload": _Payload(str(sentinel))}
    torch.save({"state_dict": state}, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "data"
    copy_demo(root, 4, ("brick", "coins"))
    return root


# --- weights that would run code ----------------------------------------------------------------


@pytest.mark.parametrize("name,legacy", [("evil.pth", False), ("evil.bin", True), ("evil.ckpt", False)])
def test_pickle_that_runs_code_is_refused_everywhere(tmp_path, data, capsys, name, legacy):
    sentinel = tmp_path / "SENTINEL-code-ran"
    evil = _evil_weights(tmp_path / name, sentinel, legacy)
    # The file is armed: an unsafe load really would run the payload (here against another path).
    armed = tmp_path / "armed-proof"
    _evil_weights(tmp_path / f"proof{evil.suffix}", armed, legacy)
    torch.load(tmp_path / f"proof{evil.suffix}", weights_only=False)
    assert armed.exists()

    with pytest.raises(UserError, match="refused"):
        import_weights(evil, "efficientnet_lite0")
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), "--weights", str(evil), *FAST]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "What to do" in err and "Traceback" not in err
    assert not sentinel.exists()
    assert not run.exists() and list_imported() == []  # no run folder, nothing in the model store


def test_pickle_renamed_to_safetensors_is_refused(tmp_path, data, capsys):
    sentinel = tmp_path / "SENTINEL-code-ran"
    evil = _evil_weights(tmp_path / "evil.safetensors", sentinel)
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--weights", str(evil), *FAST]) == 2
    assert "not a valid safetensors file" in capsys.readouterr().err
    assert not sentinel.exists()


# --- broken safetensors headers ------------------------------------------------------------------

BROKEN_SAFETENSORS = {
    "terabyte header": struct.pack("<Q", 2**42) + b'{"a":1}',
    "invalid json": struct.pack("<Q", 12) + b"{not json!!}",
    "offsets past the end": struct.pack("<Q", 72) + json.dumps(
        {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4000000]}}).encode().ljust(72) + b"\0" * 16,
    "eight bytes": b"\xff" * 8,
    "empty": b"",
}


@pytest.mark.parametrize("kind", list(BROKEN_SAFETENSORS))
def test_broken_safetensors_header_is_refused(tmp_path, data, capsys, kind):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(BROKEN_SAFETENSORS[kind])
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--weights", str(path), *FAST]) == 2
    err = capsys.readouterr().err
    assert "weights.safetensors" in err and "What to do" in err and "Traceback" not in err
    with pytest.raises(UserError, match="damaged"):
        checkpoint.load_checkpoint(path)
    with pytest.raises(UserError, match="damaged"):
        checkpoint.read_meta(path)


# --- ONNX models that point at other files ---------------------------------------------------------


def _onnx_with_external_weights(path, location):
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], np.ones(6, np.float32).tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "W"], ["probabilities"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for key, value in {"classes": '["a", "b"]', "mean": "[0,0,0]", "std": "[1,1,1]", "input_size": "[8, 8]",
                       "interpolation": "bilinear", "crop_pct": "1.0"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    tensor = model.graph.initializer[0]
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "24")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("where", ["parent", "absolute", "sibling"])
def test_onnx_external_data_is_refused_by_predict(tmp_path, capsys, where):
    secret = tmp_path / "secret" / "weights.bin"
    secret.parent.mkdir()
    np.ones(6, np.float32).tofile(secret)
    location = {"parent": "../secret/weights.bin", "absolute": str(secret), "sibling": "weights.bin"}[where]
    model = _onnx_with_external_weights(tmp_path / "model" / "model.onnx", location)
    if where == "sibling":
        shutil.copy(secret, model.parent / "weights.bin")
    image = demo_image("brick", 0)
    assert main(["predict", str(model), str(image)]) == 2
    err = capsys.readouterr().err
    assert "refers to weights in another file" in err and "What to do" in err and "Traceback" not in err


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x08\x07" + b"\xff" * 50])
def test_garbage_onnx_is_refused_by_predict(tmp_path, capsys, content):
    (tmp_path / "model.onnx").write_bytes(content)
    assert main(["predict", str(tmp_path / "model.onnx"), str(demo_image("brick", 0))]) == 2
    err = capsys.readouterr().err
    assert "model.onnx" in err and "Traceback" not in err


# --- damaged checkpoints ---------------------------------------------------------------------------


@pytest.fixture
def run_copy(tmp_path, trained_run, small_dataset):
    """A writable copy of the finished session run, marked as interrupted so --resume loads last."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    index = json.loads((run / DATASET_FILE).read_text())
    index["source"] = relative_to_run(run, small_dataset)
    (run / DATASET_FILE).write_text(json.dumps(index))
    info = json.loads((run / RUN_FILE).read_text())
    info["status"] = "running"
    (run / RUN_FILE).write_text(json.dumps(info))
    return run


def _damage(path, how):
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 3], "garbage": np.random.default_rng(0).bytes(5000),
                      "empty": b"", "huge header": struct.pack("<Q", 2**45) + data[8:200]}[how])


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "huge header"])
@pytest.mark.parametrize("which", ["best", "last"])
def test_damaged_checkpoint_gives_a_clear_message(run_copy, capsys, which, how):
    _damage(run_copy / f"{which}.safetensors", how)
    before = {p.name: p.read_bytes() for p in files_under(run_copy)}
    commands = [["evaluate", str(run_copy), "--checkpoint", which],
                ["export", str(run_copy), "--checkpoint", which]]
    if which == "last":
        commands.append(["train", "ignored", "--out", str(run_copy), "--resume"])
    for argv in commands:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert f"{which}.safetensors" in captured.err and "damaged" in captured.err, argv
        assert "Traceback" not in captured.err and "Saved in" not in captured.out
    after = {p.name: p.read_bytes() for p in files_under(run_copy)}
    assert after == before  # nothing written, nothing removed


def test_checkpoint_of_another_run_is_refused(run_copy, capsys):
    other = torch.nn.Linear(3, 2)
    checkpoint.save_checkpoint(run_copy / "best.safetensors", other, {"arch": "efficientnet_lite0",
                                                                       "classes": ["x", "y"], "preprocessing": {}})
    for argv in (["evaluate", str(run_copy)], ["export", str(run_copy)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "does not belong to this run" in err and "Traceback" not in err


# --- hand-edited run files --------------------------------------------------------------------------


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


RUN_EDITS = {
    "run.json truncated": (RUN_FILE, None),
    "run.json not an object": (RUN_FILE, lambda d: d.clear() or d.update({"x": [1]})),
    "epochs as text": (RUN_FILE, lambda d: d["config"].update(epochs="8")),
    "batch size negative": (RUN_FILE, lambda d: d["config"].update(batch_size=-1)),  # 0 means auto
    "classes not a list": (RUN_FILE, lambda d: d.update(classes="brick")),
    "classes differ from the dataset": (RUN_FILE, lambda d: d.update(classes=d["classes"][:2])),
    "config not an object": (RUN_FILE, lambda d: d.update(config=[1, 2])),
    "run.json nested 100000 deep": (RUN_FILE, "[" * 100000 + "]" * 100000),
    "dataset.json truncated": (DATASET_FILE, None),
    "sample label out of range": (DATASET_FILE, lambda d: d["samples"][0].update(label=99)),
    "source with a NUL byte": (DATASET_FILE, lambda d: d.update(source="../da\0ta")),
    "samples not a list": (DATASET_FILE, lambda d: d.update(samples={"a": 1})),
}


@pytest.mark.parametrize("edit", list(RUN_EDITS))
def test_hand_edited_run_files_are_refused_with_a_message(run_copy, capsys, edit):
    name, change = RUN_EDITS[edit]
    path = run_copy / name
    before = {p.name for p in files_under(run_copy)}
    if change is None:
        path.write_bytes(path.read_bytes()[:40])
    elif isinstance(change, str):
        path.write_text(change)
    else:
        _edit_json(path, change)
    for argv in (["evaluate", str(run_copy)], ["export", str(run_copy)],
                 ["train", "ignored", "--out", str(run_copy), "--resume"]):
        assert main(argv) == 2, (edit, argv)
        err = capsys.readouterr().err
        assert "What to do" in err and "Traceback" not in err, (edit, argv, err)
    assert {p.name for p in files_under(run_copy)} == before  # no half-done export or checkpoint


# --- project files -----------------------------------------------------------------------------------

project = pytest.importorskip("desktop_tl.core.project")


def _saved_project(tmp_path):
    proj = project.Project(data_source=tmp_path / "data", runs=[tmp_path / "runs" / "a"])
    path = tmp_path / "study.dtlproj"
    project.save_project(path, proj)
    return path


PROJECT_EDITS = {
    "truncated": lambda text, data: text[: len(text) // 2],
    "empty": lambda text, data: "",
    "not utf-8": lambda text, data: b"\xff\xfe\x00garbage".decode("latin-1"),
    "a list": lambda text, data: "[1, 2, 3]",
    "wrong format": lambda text, data: json.dumps(dict(data, format="something/9")),
    "epochs as text": lambda text, data: json.dumps(dict(data, hyperparameters=dict(data["hyperparameters"], epochs="8"))),
    "epochs negative": lambda text, data: json.dumps(dict(data, hyperparameters=dict(data["hyperparameters"], epochs=-3))),
    "lr NaN": lambda text, data: json.dumps(dict(data, hyperparameters=dict(data["hyperparameters"], lr=float("nan")))),
    "split a string": lambda text, data: json.dumps(dict(data, split="70/15/15")),
    "runs a number": lambda text, data: json.dumps(dict(data, runs=5)),
    "run entry an object": lambda text, data: json.dumps(dict(data, runs=[{"path": "x"}])),
    "dataset a list": lambda text, data: json.dumps(dict(data, dataset=["x"])),
    "source a number": lambda text, data: json.dumps(dict(data, dataset={"source": 12})),
    "model name a list": lambda text, data: json.dumps(dict(data, model={"name": ["resnet"]})),
    "deeply nested": lambda text, data: "[" * 100000 + "]" * 100000,
}


@pytest.mark.parametrize("edit", list(PROJECT_EDITS))
def test_damaged_project_file_is_refused_with_a_message(tmp_path, edit):
    path = _saved_project(tmp_path)
    text = path.read_text(encoding="utf-8")
    edited = PROJECT_EDITS[edit](text, json.loads(text))
    path.write_bytes(edited.encode("utf-8") if edit != "not utf-8" else b"\xff\xfe\x00garbage")
    with pytest.raises(UserError) as info:
        project.load_project(path)
    assert info.value.what and info.value.hint


def test_project_round_trip_still_works(tmp_path):
    path = _saved_project(tmp_path)
    loaded = project.load_project(path)
    assert loaded.data_source == (tmp_path / "data").resolve() and loaded.runs == [(tmp_path / "runs" / "a").resolve()]


@pytest.mark.parametrize("field", ["source", "run", "current_run"])
def test_project_path_with_nul_byte_is_refused(tmp_path, field):
    path = _saved_project(tmp_path)
    data = json.loads(path.read_text())
    if field == "source":
        data["dataset"]["source"] = "da\0ta"
    elif field == "run":
        data["runs"] = ["runs/\0a"]
    else:
        data["current_run"] = "runs/\0a"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError):
        project.load_project(path)
