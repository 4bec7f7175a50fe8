"""int8 static quantization of an exported model: metadata kept, accuracy and speed reported."""

from __future__ import annotations

import shutil

import numpy as np
import onnx

from desktop_tl.cli import main
from desktop_tl.core.deploy.export import export_onnx
from desktop_tl.core.deploy.predict import OnnxClassifier
from desktop_tl.core.deploy.quantize import compare_models, int8_path, quantize_int8
from desktop_tl.core.runs.folder import load_index


def test_int8_model_keeps_metadata_and_stays_close(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("*.onnx"))
    index = load_index(trained_run)
    fp32 = run / "model.onnx"
    export_onnx(trained_run, out=fp32)
    int8 = quantize_int8(fp32, index)
    assert int8 == int8_path(fp32) == run / "model.int8.onnx"
    a, b = onnx.load(str(fp32)), onnx.load(str(int8))
    props_a = {p.key: p.value for p in a.metadata_props}
    props_b = {p.key: p.value for p in b.metadata_props}
    assert props_a.items() <= props_b.items() and "quantization" in props_b
    assert any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in b.graph.node)
    classifier = OnnxClassifier(int8)
    assert classifier.classes == OnnxClassifier(fp32).classes
    comparison = compare_models(fp32, int8, index)
    assert comparison.fp32.images > 0 and comparison.int8.images == comparison.fp32.images
    assert comparison.agreement >= 0.75 and abs(comparison.accuracy_change) <= 0.25
    assert comparison.int8.size_bytes < comparison.fp32.size_bytes / 2
    assert comparison.fp32.images_per_sec > 0 and comparison.int8.images_per_sec > 0
    probs = classifier.predict_arrays(np.zeros((2, 3, *classifier.prep.input_size), np.float32))
    assert probs.shape == (2, len(classifier.classes)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    _, _, scores = classifier.predict_outputs(np.zeros((2, 3, *classifier.prep.input_size), np.float32))
    assert classifier.familiarity is not None and scores.shape == (2,) and np.isfinite(scores).all()  # the check too


def test_export_int8_from_the_command_line(trained_run, tmp_path, capsys):
    out = tmp_path / "exported" / "model.onnx"
    assert main(["export", str(trained_run), "--out", str(out), "--int8"]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "exported" / "model.int8.onnx").is_file()
    assert "model.int8.onnx" in text and "accuracy" in text and "img/s" in text
