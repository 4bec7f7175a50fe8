"""ONNX export with metadata and parity, and prediction without PyTorch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from desktop_tl.core.deploy.export import OPSET, export_onnx
from desktop_tl.core.deploy.predict import OnnxClassifier, collect_inputs
from desktop_tl.core.errors import UserError


@pytest.fixture(scope="module")
def exported(trained_run) -> tuple[Path, object]:
    result = export_onnx(trained_run)
    return trained_run / "model.onnx", result


def test_export_is_self_contained_with_metadata(exported, trained_run):
    path, result = exported
    model = onnx.load(str(path), load_external_data=False)
    assert model.opset_import[0].version == OPSET
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sorted(p.name for p in Path(trained_run).iterdir() if p.suffix in {".data", ".bin"}) == []
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["classes"]) == ["brick", "coins", "grass", "gravel"]
    assert json.loads(props["input_size"]) == [64, 64] and props["interpolation"] == "bicubic"
    assert props["arch"] == "efficientnet_lite0" and props["weights"] == "bundled"
    assert {"mean", "std", "crop_pct", "training"} <= props.keys()
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    # No path of any kind in the model file.
    raw = path.read_bytes()
    assert str(trained_run).encode() not in raw and str(Path.home()).encode() not in raw


def test_parity_checked_on_real_images_and_recorded(exported, trained_run):
    _, result = exported
    assert result.parity_ok
    # the probabilities, and the unfamiliarity score relative to its size, at two batch sizes
    assert set(result.parity_max_abs_diff) == {"batch_1", "batch_7", "unfamiliarity_batch_1", "unfamiliarity_batch_7"}
    assert max(result.parity_max_abs_diff.values()) <= 1e-4
    stored = json.loads((trained_run / "export.json").read_text())
    assert stored["parity_max_abs_diff"] == result.parity_max_abs_diff and stored["onnx_file"] == "model.onnx"


def test_onnx_predictions_match_the_pytorch_model(exported, small_dataset, trained_run):
    import torch

    from desktop_tl.core.data.imageio import load_image
    from desktop_tl.core.data.preprocess import Preprocessing
    from desktop_tl.core.data.transforms import eval_transform
    from desktop_tl.core.runs.trained import model_from_checkpoint

    path, _ = exported
    classifier = OnnxClassifier(path)
    files = collect_inputs([small_dataset / "coins"])
    predictions = list(classifier.predict_files(files, batch_size=4))
    assert len(predictions) == 10
    model, meta = model_from_checkpoint(trained_run)
    transform = eval_transform(Preprocessing.from_dict(meta["preprocessing"]))
    with torch.no_grad():
        reference = torch.softmax(model(torch.stack([transform(load_image(f)) for f, _ in files])), 1).numpy()
    got = np.array([[p.probabilities[c] for c in classifier.classes] for p in predictions])
    assert np.abs(got - reference).max() <= 1e-4
    assert [p.label for p in predictions] == [classifier.classes[k] for k in reference.argmax(1)]


def test_predict_cli_works_where_torch_cannot_be_imported(exported, small_dataset, tmp_path):
    path, _ = exported
    out_csv = tmp_path / "out.csv"
    (tmp_path / "imgs").mkdir()
    broken = tmp_path / "imgs" / "broken.png"
    broken.write_bytes(b"not an image")
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; sys.modules['timm'] = None\n"
        "from desktop_tl.cli import main\n"
        f"rc = main(['predict', {str(path)!r}, {str(small_dataset / 'grass')!r}, {str(tmp_path / 'imgs')!r}, '--csv', {str(out_csv)!r}])\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0].keys())[:3] == ["path", "label", "probability"]
    assert list(rows[0].keys())[3:8] == ["status", "brick", "coins", "grass", "gravel"]
    assert len(rows) == 11
    assert all(r["path"].startswith(str(small_dataset / "grass")) for r in rows[:10])
    assert rows[-1]["error"] and not rows[-1]["label"]


@pytest.mark.parametrize("location", ["../outside.data", "/etc/hostname", "weights.data"])
def test_onnx_with_external_data_is_refused(tmp_path, exported, location):
    path, _ = exported
    model = onnx.load(str(path))
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=0)
    hostile = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    for tensor in hostile.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    (tmp_path / "ext.onnx").write_bytes(hostile.SerializeToString())
    with pytest.raises(UserError, match="self-contained"):
        OnnxClassifier(tmp_path / "ext.onnx")


def test_predict_inputs_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        collect_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="No image"):
        collect_inputs([tmp_path / "empty"])
