"""Several labels per image (issue 22), a short run end to end on real photographs: 2x2 mosaics showing 1-3 of
four materials. Sigmoid outputs and binary cross-entropy; each label's temperature and threshold chosen on
validation; per-label figures and exact-set accuracy on the test split; evaluate agrees; the exported model gives
sigmoid probabilities that onnxruntime and PyTorch agree on, with the thresholds in its metadata, which
`predict` applies without torch; a single-label run is unchanged (the rest of the suite)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.deploy.export import export_onnx, parity_images
from desktop_tl.core.deploy.predict import OnnxClassifier, prediction_record
from desktop_tl.core.evaluation.splits import evaluate_run
from desktop_tl.core.events import Finished, Planned
from desktop_tl.core.label_rules import LabelRules
from desktop_tl.core.runs.folder import load_index, open_run
from desktop_tl.core.runs.trained import model_from_checkpoint

from helpers import MATERIALS, write_mosaics


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    """A finished multi-label run on 36 mosaics (the automatic recipe, a 12-second budget at 64 px), trained by
    the window's own job (what Start runs on the worker thread)."""
    from desktop_tl.core.control import RunControl
    from desktop_tl.core.data.importer import import_dataset
    from desktop_tl.gui.training.training_jobs import train_job

    root = tmp_path_factory.mktemp("multilabel")
    table = write_mosaics(root / "mosaics", 36)
    run, split = root / "run", SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0)
    events: list = []
    context = SimpleNamespace(control=RunControl(), should_stop=lambda: False, event=events.append)
    assert train_job(run, False, import_dataset(table, split), TrainConfig(budget=12.0, image_size=64, num_workers=0),
                     split)(context) == run
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    assert "Several labels per image" in (run / "log.txt").read_text()
    return run, events, table


def test_a_multi_label_run_trains_sigmoid_outputs_and_chooses_each_labels_rule_on_validation(multilabel_run):
    run, events, _ = multilabel_run
    [planned] = [e for e in events if isinstance(e, Planned)]
    assert any("Several labels per image: one sigmoid output per label" in line for line in planned.lines)
    assert [s["kind"] for s in planned.plan["stages"]] == ["finetune"]       # no softmax probe, no softmax check
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "multi_label" and metrics["classes"] == list(MATERIALS)
    rules = open_run(run).label_rules
    assert isinstance(rules, LabelRules) and rules.to_dict() == metrics["label_rules"]
    index = load_index(run)
    test = metrics["test"]
    assert test["images"] == len(index.split("test"))
    for k, name in enumerate(MATERIALS):
        row = test["per_label"][name]
        assert row["images"] == sum(k in s.labels for s in index.split("test"))
        assert row["tp"] + row["fn"] == row["images"] and row["threshold"] == rules.thresholds[k]
        assert set(row["sensitivity"]) == {"value", "ci95", "hits", "of"} and row["auc"] is not None
    exact = sum(set(p["labels"]) == set(p["predicted"]) for p in test["predictions"])
    assert test["exact_set_accuracy"]["hits"] == exact
    assert 0.0 <= test["micro_f1"] <= 1.0 and 0.0 <= test["macro_f1"] <= 1.0
    again = evaluate_run(run)                       # evaluate applies the rules chosen when the run completed
    for name, row in again["test"]["per_label"].items():       # the same counts (the ECE to float noise)
        assert {k: row[k] for k in ("tp", "fn", "fp", "tn", "threshold")} == \
            {k: test["per_label"][name][k] for k in ("tp", "fn", "fp", "tn", "threshold")}
        assert row["ece"] == pytest.approx(test["per_label"][name]["ece"], abs=1e-4)


def test_the_exported_model_gives_calibrated_sigmoids_that_onnxruntime_and_pytorch_agree_on(multilabel_run, tmp_path):
    run, _, _ = multilabel_run
    out = tmp_path / "labels.onnx"
    result = export_onnx(run, out)
    assert result.parity_ok and result.metadata["task"] == "multi_label"
    rules = open_run(run).label_rules
    assert LabelRules.from_metadata(result.metadata["label_rules"], 4) == rules
    model, meta = model_from_checkpoint(run)
    images = parity_images(load_index(run), Preprocessing.from_dict(meta["preprocessing"]))
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(images)) / torch.tensor(rules.temperatures)).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": images})[0]
    assert got.shape == (len(images), 4) and np.abs(got - expected).max() < 1e-4
    assert not np.allclose(got.sum(1), 1.0)           # one probability per label, not a distribution
    classifier = OnnxClassifier(out)
    assert classifier.multi_label and classifier.has_heatmaps


def test_predict_applies_each_labels_threshold_without_torch(multilabel_run, tmp_path):
    run, _, table = multilabel_run
    model = tmp_path / "labels.onnx"
    export_onnx(run, model)
    out_csv, maps = tmp_path / "out.csv", tmp_path / "maps"
    code = (
        "import sys, json; sys.modules['torch'] = None; sys.modules['torchvision'] = None; sys.modules['timm'] = None\n"
        "from desktop_tl.cli import main\n"
        f"rc = main(['predict', {str(model)!r}, {str(table.parent)!r}, '--csv', {str(out_csv)!r}, "
        f"'--heatmaps', {str(maps)!r}])\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["path", "labels", "status", *MATERIALS, "error"] and len(rows) == 36
    rules = open_run(run).label_rules
    for row in rows:
        probabilities = [float(row[m]) for m in MATERIALS]
        passed = {m for m, p, t in zip(MATERIALS, probabilities, rules.thresholds) if p >= t}
        assert set(filter(None, row["labels"].split(";"))) == passed
    assert any(";" in row["labels"] for row in rows)             # several labels found on one image
    shown = sum(len(list(filter(None, row["labels"].split(";")))) for row in rows)
    assert len(list(maps.glob("*.heatmap.png"))) == shown       # a heat map per label found
    [first] = OnnxClassifier(model).predict_files([(table.parent / "mosaic_000.png", "mosaic_000.png")])
    record = prediction_record(first)
    assert set(record) == {"path", "labels", "probabilities", "status", "error"}
    assert record["labels"] == list(first.labels) and set(record["probabilities"]) == set(MATERIALS)


def test_the_report_and_the_evaluation_panel_give_every_labels_figures(multilabel_run):
    from desktop_tl.core.evaluation.report import build_report
    from desktop_tl.gui.evaluation.evaluation_tables import summary_text

    run, _, _ = multilabel_run
    report = build_report(run)
    assert "exact set of labels right" in report and "<h3>Per label (test)</h3>" in report
    assert all(f"<td>{name}</td>" in report for name in MATERIALS) and "Confusion matrix" not in report
    metrics = json.loads((run / "metrics.json").read_text())
    text = summary_text("Test", metrics["test"])
    assert "several labels per image. Exact set of labels right" in text and "gravel" in text


def test_the_evaluation_panel_lists_every_label_and_the_images_whose_set_is_wrong(multilabel_run, qtbot):
    from desktop_tl.gui.evaluation.evaluation_panel import EvaluationPanel
    from desktop_tl.gui.state import AppState
    from desktop_tl.gui.worker import EngineController

    run, _, _ = multilabel_run
    state, controller = AppState(), EngineController()
    panel = EvaluationPanel(state, controller)
    qtbot.addWidget(panel)
    state.set_run(run)
    metrics = json.loads((run / "metrics.json").read_text())
    state.set_metrics(metrics)
    model = panel.class_model
    assert [model.data(model.index(r, 0)) for r in range(model.rowCount())] == list(MATERIALS)
    test = metrics["test"]
    assert panel.gallery_model.rowCount() == len(test["misclassified"]) == test["wrong_sets"]
    assert ("whose set of labels is not exactly right" in panel.gallery_note.text() if test["wrong_sets"]
            else panel.gallery_note.text() == "No mistakes in this split.")
    controller.shutdown()


def test_the_single_label_tools_refuse_a_multi_label_run_with_a_clear_message(multilabel_run, tmp_path):
    from desktop_tl.core.deploy.label_assist import rank_unlabelled
    from desktop_tl.core.deploy.quantize import quantize_int8
    from desktop_tl.core.deploy.watch import FolderWatch
    from desktop_tl.core.errors import UserError
    from desktop_tl.core.training.label_review import review_labels

    run, _, table = multilabel_run
    model = tmp_path / "labels.onnx"
    export_onnx(run, model)
    for what, call in (("Review labels", lambda: review_labels(run)),
                       ("Label assist", lambda: rank_unlabelled(model, table.parent, tmp_path)),
                       ("The int8 export", lambda: quantize_int8(model, load_index(run))),
                       ("A silent trial", lambda: FolderWatch(model, table.parent, tmp_path / "trial.jsonl"))):
        with pytest.raises(UserError, match=f"{what}.* works with one label per image"):
            call()


def test_the_operating_point_view_shows_one_label_at_a_time_at_its_threshold(multilabel_run, qtbot):
    from desktop_tl.gui.evaluation.operating_point_view import OperatingPointView

    run, _, _ = multilabel_run
    metrics = json.loads((run / "metrics.json").read_text())
    view = OperatingPointView()
    qtbot.addWidget(view)
    view.show_metrics(metrics, run)
    assert [view.class_box.itemText(i) for i in range(view.class_box.count())] == list(MATERIALS)
    assert view.class_label.text() == "Label" and not view.save_button.isEnabled()
    view.class_box.setCurrentIndex(2)                                    # 'grass'
    assert view.positive == "grass"
    assert view.threshold == pytest.approx(metrics["label_rules"]["thresholds"][2], abs=1e-3)
    row = metrics["test"]["per_label"]["grass"]
    assert f"{row['tp']}/{row['tp'] + row['fn']}" in view.figures.text()       # the test split's sensitivity
