"""Ensembles: when cross-validation finds the average of the pretrained path and the small network better than
the probe beyond the noise, the run's model averages them; checkpoints, resume, evaluation, ONNX export (one
graph, onnxruntime agreeing with PyTorch), int8 and predict treat it like any other model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.decision import BEFORE_REFIT
from desktop_tl.core.deploy.export import export_onnx, parity_images
from desktop_tl.core.deploy.heatmaps import CAM_OUTPUT
from desktop_tl.core.deploy.predict import OnnxClassifier
from desktop_tl.core.deploy.quantize import quantize_int8
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.report import build_report
from desktop_tl.core.evaluation.splits import evaluate_run
from desktop_tl.core.events import Finished, Message
from desktop_tl.core.models.delivered import ENSEMBLE_ARCH, SCRATCH_ARCH
from desktop_tl.core.models.ensemble import Ensemble, view
from desktop_tl.core.models.rebuild import architecture_for
from desktop_tl.core.models.scratch import ScratchNet
from desktop_tl.core.reporting import format_metrics
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import MEMBER_CHECKPOINT, create_run, load_index
from desktop_tl.core.runs.listing import summarize_run
from desktop_tl.core.runs.retrain import retrain_config
from desktop_tl.core.runs.trained import model_from_checkpoint
from desktop_tl.core.training import baseline, baseline_folds, probe_fit, refit, side_session
from desktop_tl.core.training import run as run_module
from desktop_tl.core.training.run import train_run

from helpers import copy_demo_subset

SPLIT = SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0)
FREE = ("identity", "hflip", "vflip", "rot90")     # the views of orientation "free"


def test_the_ensemble_averages_its_members_probabilities_over_its_views():
    torch.manual_seed(0)
    members = [ScratchNet(3, 16).eval(), ScratchNet(3, 24).eval()]
    ensemble = Ensemble(members, ("identity", "hflip")).eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = torch.stack([m(v).softmax(1) for m in members for v in (images, images.flip(-1))]).mean(0)
        got = ensemble(images).softmax(1)
    assert torch.allclose(got, expected, atol=1e-6)


def test_one_networks_maps_are_averaged_over_its_views_turned_back():
    torch.manual_seed(1)
    member = ScratchNet(3, 32).eval()
    ensemble = Ensemble([member], FREE).eval()
    images = torch.randn(2, 3, 32, 32)
    weight = member.get_classifier().weight
    with torch.no_grad():
        probabilities, maps = ensemble.probabilities_and_maps(images)
        expected = torch.stack([view(name, torch.einsum("kc,nchw->nkhw", weight,
                                                        member.forward_features(view(name, images))), inverse=True)
                                for name in FREE]).mean(0)
        assert torch.allclose(maps, expected, atol=1e-5)
        assert torch.allclose(probabilities, ensemble(images).softmax(1), atol=1e-6)


def test_an_ensemble_is_rebuilt_from_its_description_and_a_damaged_one_is_a_clear_message():
    meta = {"arch": ENSEMBLE_ARCH, "members": [{"arch": SCRATCH_ARCH, "scratch_size": 16},
                                               {"arch": SCRATCH_ARCH, "scratch_size": 24}], "views": ["identity"]}
    model = architecture_for(meta, 3)
    assert isinstance(model, Ensemble) and [m.size for m in model.members] == [16, 24]
    for damaged in ({**meta, "members": []}, {**meta, "views": ["sideways"]}, {**meta, "members": [meta]}):
        with pytest.raises(UserError, match="damaged"):
            architecture_for(damaged, 3)


@pytest.fixture
def ensemble_chosen(monkeypatch):
    """The choice itself is a pure function tested in test_cross_validation; here it takes the ensemble."""
    real = baseline_folds.compare_candidates

    def ensemble(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), chosen="ensemble")

    monkeypatch.setattr(baseline_folds, "compare_candidates", ensemble)


def _check_delivered_ensemble(run, tmp_path, int8: bool = False):
    """Evaluate, export, compare onnxruntime with PyTorch on real images, predict (and quantize first)."""
    metrics = json.loads((run / "metrics.json").read_text())
    model, meta = model_from_checkpoint(run)
    assert isinstance(model, Ensemble) and meta["arch"] == ENSEMBLE_ARCH
    assert [m["arch"] for m in meta["members"]] == ["efficientnet_lite0", SCRATCH_ARCH]
    assert metrics["cross_validation"]["comparison"]["chosen"] == "ensemble"
    assert evaluate_run(run)["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    out = tmp_path / "ensemble.onnx"
    result = export_onnx(run, out)
    assert result.parity_ok
    assert json.loads(result.metadata["members"]) == ["efficientnet_lite0", SCRATCH_ARCH]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert CAM_OUTPUT not in [o.name for o in session.get_outputs()]
    images = parity_images(load_index(run), Preprocessing.from_dict(meta["preprocessing"]))
    temperature = (json.loads((run / "run.json").read_text()).get("calibration") or {}).get("temperature", 1.0)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(images)) / temperature, 1).numpy()
    got = session.run(None, {"input": images})[0]
    assert np.abs(got - expected).max() < 1e-4
    index = load_index(run)
    for model_file in (out, quantize_int8(out, index)) if int8 else (out,):
        classifier = OnnxClassifier(model_file)
        assert not classifier.has_heatmaps
        prediction = next(iter(classifier.predict_files([(index.abs_path(index.split("test")[0]), "a.jpg")])))
        assert prediction.label in metrics["classes"]
    return metrics


def test_an_ensemble_chosen_before_fine_tuning_averages_the_fine_tuned_model_with_the_small_network_refitted(
        tmp_path, ensemble_chosen, monkeypatch):
    data = copy_demo_subset(tmp_path / "images", 12, ("grass", "gravel"))
    run = tmp_path / "run"
    create_run(run, data, TrainConfig(budget=60.0, num_workers=0), SPLIT)     # room for the refit
    refit_sessions, real_session = [], side_session.TrainingSession

    def watched(info, index, *args):     # the refit's own session: what it trains on
        refit_sessions.append(real_session(info, index, *args))
        return refit_sessions[-1]

    monkeypatch.setattr(side_session, "TrainingSession", watched)
    retrained = []
    monkeypatch.setattr(refit, "small_network_on_all", lambda s, *a: retrained.append(len(s.train_samples))
                        or baseline.small_network_on_all(s, *a))
    events = list(train_run(run))
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    texts = " ".join(e.text for e in events if isinstance(e, Message))
    assert "fine-tuning goes ahead" in texts and "averages the best fine-tuned model" in texts
    kept = checkpoint.read_meta(run / MEMBER_CHECKPOINT)     # what it records: no path, no image, no identifier
    assert set(kept) == {"arch", "scratch_size", "classes", "format_version"} and kept["arch"] == SCRATCH_ARCH

    index = load_index(run)          # the refit trained on the training and validation images, never on test
    [session] = refit_sessions
    pooled = {x.path for x in index.split("train") + index.split("val")}
    assert {x.path for x in session.train_samples} == pooled and len(session.val_set) == 0
    assert not pooled & {x.path for x in index.split("test")} and retrained == [len(index.split("train"))]
    assert f"Training again on all {len(pooled)} training and validation images" in texts
    metrics = _check_delivered_ensemble(run, tmp_path)
    assert metrics["val_source"] == BEFORE_REFIT and metrics["cross_validation"]["trained_on"] == "train+val"
    assert metrics["cross_validation"]["refit"]["images"] == len(pooled)
    best = checkpoint.load_checkpoint(run / "best.safetensors").model
    refitted = checkpoint.load_checkpoint(run / "refit" / "last.safetensors").model
    assert all(torch.equal(best[f"members.0.{name}"], value) for name, value in refitted.items())
    again = evaluate_run(run)        # its validation images trained it: evaluate keeps the figures from before
    assert again["val_source"] == BEFORE_REFIT and again["val"] == json.loads(json.dumps(metrics["val"]))
    assert "val (predicted by the model before it trained again on train+val)" in format_metrics(again)
    assert f"then trained again on all {len(pooled)} training and validation images" in build_report(run)
    retrain = retrain_config(run)           # label assist's Retrain starts afresh, and says why
    assert not retrain.continued and "the average of efficientnet_lite0 and a small network" in retrain.note
    assert "average of efficientnet_lite0 and a small network" in summarize_run(run).recipe
    report = build_report(run)             # the report names the model delivered, and where choices were made
    assert ("The delivered model: average of efficientnet_lite0 and a small network trained from scratch (the "
            "pretrained model: efficientnet_lite0 with bundled weights)") in report
    assert "by 5-fold cross-validation over the training and validation images" in report


def test_an_ensemble_without_fine_tuning_is_trained_on_train_and_val(tmp_path, ensemble_chosen, monkeypatch):
    real = run_module.plan_auto

    def probe_only(*args, **kwargs):      # as a short budget on a large set plans it
        plan = real(*args, **kwargs)
        return dataclasses.replace(plan, stages=tuple(s for s in plan.stages if s.kind != "finetune"))

    monkeypatch.setattr(run_module, "plan_auto", probe_only)
    monkeypatch.setattr(probe_fit, "lower_loss_beyond_noise", lambda *args: True)    # and flipped copies averaged
    data = copy_demo_subset(tmp_path / "images", 12, ("grass", "gravel"))
    run = tmp_path / "run"
    create_run(run, data, TrainConfig(budget=10.0, num_workers=0, orientation="free"), SPLIT)
    events = list(train_run(run))
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    metrics = _check_delivered_ensemble(run, tmp_path, int8=True)
    assert metrics["cross_validation"]["trained_on"] == "train+val"
    assert model_from_checkpoint(run)[0].views == FREE
    assert metrics["val_source"] != "validation"
    again = evaluate_run(run)         # its "validation" images trained it: evaluate shows the out-of-fold figures
    assert again["val_source"] == metrics["val_source"] and again["val"] == json.loads(json.dumps(metrics["val"]))
    assert "val, cross-validated (out-of-fold" in format_metrics(again)
