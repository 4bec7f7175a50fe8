"""Operating point and calibration: known answers on synthetic scores, then a real two-class run end to end
(calibrated on validation, a threshold chosen by target sensitivity from the CLI, carried by the ONNX file)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from desktop_tl.cli import main
from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.decision import Calibration, temper
from desktop_tl.core.deploy.export import export_onnx
from desktop_tl.core.deploy.predict import OnnxClassifier
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.calibration import expected_calibration_error, fit_temperature, log_loss
from desktop_tl.core.evaluation.operating_point import (
    choose_decision,
    choose_operating_threshold,
    operating_point,
    roc_curve,
)
from desktop_tl.core.events import Finished
from desktop_tl.core.runs.folder import create_run, open_run
from desktop_tl.core.training.run import train_run

from helpers import copy_demo_subset

# --- known answers ---------------------------------------------------------------------------------------


def _overconfident(n: int = 3000, sharpen: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z), and the probabilities of a model that reports softmax(sharpen * z)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, 3))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true])
    reported = np.exp(sharpen * logits) / np.exp(sharpen * logits).sum(1, keepdims=True)
    return reported, labels


def test_temperature_scaling_undoes_overconfidence_and_lowers_the_calibration_error():
    probs, labels = _overconfident()
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(3.0, rel=0.1)                # the sharpening it has to undo
    calibrated = temper(probs, t)
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(probs, labels) / 3
    assert log_loss(calibrated, labels) < log_loss(probs, labels)
    assert (calibrated.argmax(1) == probs.argmax(1)).all()  # the ranking, so accuracy, is unchanged
    assert fit_temperature(probs, np.zeros(len(labels), dtype=int)) == 1.0     # nothing to fit


def test_a_well_calibrated_model_keeps_a_temperature_near_one():
    probs, labels = _overconfident(sharpen=1.0, seed=1)
    assert fit_temperature(probs, labels) == pytest.approx(1.0, abs=0.1)


# Ten positives scored 0.1, 0.2, ..., 1.0 and ten negatives scored 0.05, 0.15, ..., 0.95: a known ROC.
POSITIVES = [round(0.1 * k, 2) for k in range(1, 11)]
NEGATIVES = [round(0.1 * k - 0.05, 2) for k in range(1, 11)]
IS_POSITIVE = [True] * 10 + [False] * 10
SCORES = POSITIVES + NEGATIVES


def test_threshold_by_target_sensitivity_is_the_highest_that_reaches_it():
    t = choose_operating_threshold(IS_POSITIVE, SCORES, "sensitivity", 0.9)
    assert t == pytest.approx(0.175)                        # 0.2 .. 1.0 are called: 9 of 10 positives
    point = operating_point(IS_POSITIVE, SCORES, t)
    assert (point["tp"], point["fn"], point["fp"], point["tn"]) == (9, 1, 8, 2)
    assert point["sensitivity"]["value"] == 0.9 and point["specificity"]["value"] == 0.2
    assert point["ppv"]["value"] == pytest.approx(9 / 17) and point["npv"]["value"] == pytest.approx(2 / 3)
    low, high = point["sensitivity"]["ci95"]
    assert low < 0.9 < high and high - low > 0.3           # ten positives say little
    assert choose_operating_threshold(IS_POSITIVE, SCORES, "sensitivity", 1.0) == pytest.approx(0.075)  # 0.1 in


def test_threshold_by_target_specificity_and_by_youden():
    t = choose_operating_threshold(IS_POSITIVE, SCORES, "specificity", 0.9)
    point = operating_point(IS_POSITIVE, SCORES, t)
    assert t == pytest.approx(0.875) and point["specificity"]["value"] == 0.9 and point["tp"] == 2
    youden = operating_point(IS_POSITIVE, SCORES, choose_operating_threshold(IS_POSITIVE, SCORES, "youden"))
    best = max(operating_point(IS_POSITIVE, SCORES, t)["sensitivity"]["value"]
               + operating_point(IS_POSITIVE, SCORES, t)["specificity"]["value"] for t in np.linspace(0, 1, 201))
    assert youden["sensitivity"]["value"] + youden["specificity"]["value"] == pytest.approx(best)


def test_the_roc_curve_runs_from_nothing_called_to_everything_called():
    curve = roc_curve(IS_POSITIVE, SCORES)
    assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0) and (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)
    assert all(b >= a for a, b in zip(curve["tpr"], curve["tpr"][1:], strict=False))
    area = np.trapezoid(curve["tpr"], curve["fpr"])
    assert area == pytest.approx(0.55)                      # P(positive scored above a negative)


# --- a real two-class run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory):
    data = copy_demo_subset(tmp_path_factory.mktemp("data") / "images", 36, ("grass", "gravel"))
    run = tmp_path_factory.mktemp("runs") / "run"
    config = TrainConfig(recipe="custom", epochs=2, image_size=64, freeze="head", augment="none", num_workers=0)
    create_run(run, data, config, SplitConfig(val_fraction=0.35, test_fraction=0.25, seed=0))
    events = list(train_run(run))
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    return run, data


def test_the_run_is_calibrated_on_validation_and_says_how_much_it_helped(two_class_run):
    run, _ = two_class_run
    calibration = open_run(run).calibration
    assert calibration is not None and calibration.fitted_on == "validation"
    metrics = json.loads((run / "metrics.json").read_text())
    report = metrics["calibration"]
    assert report["temperature"] == calibration.temperature
    assert report["val_ece_after"] <= report["val_ece_before"] + 1e-9     # fitted there: never worse
    assert metrics["val"]["ece"] == pytest.approx(report["val_ece_after"])
    scores = metrics["test"]["scores"]
    assert scores["positive"] in ("grass", "gravel") and len(scores["probability"]) == metrics["test"]["images"]


def test_a_target_sensitivity_from_the_cli_is_saved_exported_and_applied_by_predict(two_class_run, tmp_path,
                                                                                   capsys):
    run, data = two_class_run
    assert main(["evaluate", str(run), "--target-sensitivity", "1.0"]) == 0
    out = capsys.readouterr().out
    decision = open_run(run).decision
    assert decision is not None and decision.criterion == "a sensitivity of at least 100%"
    assert "Saved in run.json" in out and f"at least {decision.threshold:.3f}" in out
    assert f"val at threshold {decision.threshold:.3f} for {decision.positive!r}: sensitivity 100.0%" in out
    assert "calibration error (ECE)" in out

    result = export_onnx(run, tmp_path / "model.onnx")
    assert result.parity_ok
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert json.loads(props["decision"]) == decision.to_dict()
    assert Calibration.from_json(props["calibration"]) == open_run(run).calibration
    classifier = OnnxClassifier(tmp_path / "model.onnx")
    predictions = list(classifier.predict_files([(p, p.name) for p in sorted(data.rglob("*.jpg"))]))
    k = classifier.classes.index(decision.positive)
    for p in predictions:                                   # the saved rule, on the calibrated probabilities
        called = p.probabilities[decision.positive] >= decision.threshold
        assert (p.label == decision.positive) == called, (p, classifier.classes[1 - k])


def test_the_exported_probabilities_are_the_calibrated_ones(two_class_run, tmp_path):
    import torch

    from desktop_tl.core.data.imageio import load_image
    from desktop_tl.core.data.preprocess import preprocess
    from desktop_tl.core.runs.trained import model_from_checkpoint

    run, data = two_class_run
    calibration = open_run(run).calibration
    export_onnx(run, tmp_path / "model.onnx")
    classifier = OnnxClassifier(tmp_path / "model.onnx")
    model, _ = model_from_checkpoint(run, "best")
    batch = np.stack([preprocess(load_image(p), classifier.prep) for p in sorted(data.rglob("*.jpg"))[:8]])
    with torch.no_grad():
        raw = torch.softmax(model(torch.from_numpy(batch)), 1).numpy()
    assert np.allclose(classifier.predict_arrays(batch), calibration.apply(raw), atol=1e-4)
    if abs(calibration.temperature - 1) > 0.05:             # and differ from the uncalibrated ones
        assert not np.allclose(classifier.predict_arrays(batch), raw, atol=1e-3)


def test_choosing_a_threshold_is_refused_clearly_where_it_cannot_apply(two_class_run, tmp_path):
    run, _ = two_class_run
    with pytest.raises(UserError, match="between 0 and 1"):
        choose_decision(run, "fixed", 1.5)
    assert main(["evaluate", str(run), "--target-specificity", "0"]) == 2
    with pytest.raises(UserError, match="no validation scores"):
        choose_decision(_unfinished_copy(run, tmp_path), "youden")


def _unfinished_copy(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "metrics.json").unlink()
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps(dict(info, status="interrupted")))
    return copy


def test_the_report_is_one_self_contained_page_without_absolute_paths(two_class_run, tmp_path, capsys):
    run, data = two_class_run
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    assert "Wrote the report: report.html" in capsys.readouterr().out
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for section in ("Dataset", "Model and recipe", "Figures", "Cautions", "Curves", "Confusion matrix",
                    "A sample of mistakes"):
        assert f"<h2>{section}" in page, section
    assert page.count("<svg") >= 3                              # loss curves, ROC, reliability
    assert "sensitivity" in page and "calibration error" in page
    metrics = json.loads((run / "metrics.json").read_text())
    if metrics["test"]["misclassified"]:
        assert "data:image/png;base64," in page                 # images embedded, not linked
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    for secret in (str(run), str(data), str(tmp_path), str(run.parent)):
        assert secret not in page


def test_a_report_of_an_unfinished_run_is_refused_with_a_message(two_class_run, tmp_path):
    from desktop_tl.core.evaluation.report import write_report

    with pytest.raises(UserError, match="has not finished"):
        write_report(_unfinished_copy(two_class_run[0], tmp_path))
