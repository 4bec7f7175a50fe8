"""Prediction sets (issue 20, item 2): split conformal sets calibrated on held-out predictions, carried by the
run and the ONNX model, given by `predict --sets` without torch."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from desktop_tl.cli import main
from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.decision import PredictionSets, fit_prediction_sets
from desktop_tl.core.deploy.export import export_onnx
from desktop_tl.core.deploy.predict import OnnxClassifier
from desktop_tl.core.runs.folder import create_run, open_run
from desktop_tl.core.training.run import train_run

from helpers import copy_demo_subset


def _probabilities(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.5
    probs = np.exp(logits)
    return labels, probs / probs.sum(1, keepdims=True)


def test_the_sets_hold_the_true_class_as_often_as_promised_on_new_images():
    labels, probs = _probabilities(4000, 5, seed=0)
    sets = fit_prediction_sets(labels[:1000], probs[:1000])
    names = [str(k) for k in range(5)]
    for coverage in (0.9, 0.95):
        found = sets.sets(probs[1000:], names, coverage)
        held = np.mean([str(y) in named for y, named in zip(labels[1000:], found, strict=True)])
        assert coverage - 0.02 <= held <= coverage + 0.03, (coverage, held)    # 3,000 new images: +-1.1 points
        assert all(named[0] == str(row.argmax()) for named, row in zip(found, probs[1000:], strict=True))
    sizes = {c: np.mean([len(s) for s in sets.sets(probs, names, c)]) for c in (0.9, 0.95)}
    assert sizes[0.95] > sizes[0.9]


def test_the_threshold_is_the_conformal_quantile_and_too_few_images_say_so():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]] * 5)   # 20 images, true class 0
    labels = np.zeros(20, dtype=int)
    sets = fit_prediction_sets(labels, probs)
    # nonconformity 1 - p(true): 0.1, 0.4, 0.7, 0.8 (5 each); 90%: the ceil(21 * 0.9) = 19th smallest, 0.8
    assert sets.thresholds == {"0.9": pytest.approx(0.2), "0.95": pytest.approx(0.2)} and sets.images == 20
    assert fit_prediction_sets(labels[:8], probs[:8]) is None                   # 8 images cannot show 90%
    assert list(fit_prediction_sets(labels[:10], probs[:10]).thresholds) == ["0.9"]
    assert PredictionSets.from_dict(json.loads(json.dumps(sets.to_dict()))) == sets
    for damaged in ({"thresholds": {"0.9": 1.5}}, {"thresholds": {"1.2": 0.3}}, {"thresholds": "x"}, None):
        assert PredictionSets.from_dict(damaged) is None


def test_a_run_carries_its_sets_into_the_onnx_model_and_predict_gives_them_without_torch(tmp_path, capsys):
    data = copy_demo_subset(tmp_path / "data", 14)                       # 4 classes: 16 validation images
    run = tmp_path / "run"
    create_run(run, data, TrainConfig(recipe="custom", epochs=1, image_size=64, freeze="head", augment="none",
                                      num_workers=0), SplitConfig(0.25, 0.25, seed=0))
    finished = list(train_run(run))[-1]
    report = finished.metrics["prediction_sets"]
    assert list(report["thresholds"]) == ["0.9"] and report["images"] == 16      # 16 are too few for 95%
    assert report["test"]["0.9"]["images"] == 16 and 0 <= report["test"]["0.9"]["coverage"] <= 1
    assert open_run(run).prediction_sets == PredictionSets.from_dict(report)
    model = tmp_path / "model.onnx"
    assert export_onnx(run, model).parity_ok
    classifier = OnnxClassifier(model)
    assert classifier.prediction_sets == open_run(run).prediction_sets
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(data / "grass"), "--sets", "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Prediction sets at 90%: the classes whose probability is at least" in printed and "\tset " in printed
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows and all(row["set"].split(";")[0] == row["label"] for row in rows)
    assert main(["predict", str(model), str(data / "grass"), "--sets", "95"]) == 2
    assert "carries no 95% prediction sets" in capsys.readouterr().err
