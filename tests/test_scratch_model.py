"""When a small network trained from scratch beats the pretrained backbone's probe on validation, it becomes
the run's model: checkpoints, resume, evaluation, ONNX export (with heat maps) and predict treat it like any
other model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.deploy.export import export_onnx, supports_cam
from desktop_tl.core.deploy.heatmaps import CAM_OUTPUT
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.splits import evaluate_run
from desktop_tl.core.events import CheckpointSaved, EpochEnd, Finished, Message
from desktop_tl.core.models.delivered import ENSEMBLE_ARCH, SCRATCH_ARCH
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.models.scratch import ScratchNet, scratch_from_meta
from desktop_tl.core.reporting import describe
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import create_run, open_run
from desktop_tl.core.runs.listing import summarize_run
from desktop_tl.core.runs.retrain import retrain_config
from desktop_tl.core.runs.trained import model_from_checkpoint
from desktop_tl.core.training import baseline_folds, loop, probe_fit
from desktop_tl.core.training.baseline import ScratchFit, scratch_wins
from desktop_tl.core.training.run import train_run

from helpers import copy_demo_subset

SPLIT = SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0)


def test_the_network_takes_the_run_input_and_shrinks_it_itself():
    net = ScratchNet(3, size=48).eval()
    images = torch.randn(2, 3, 160, 160)
    small = torch.nn.functional.interpolate(images, size=(48, 48), mode="bilinear", antialias=True)
    assert torch.allclose(net(images), net(small), atol=1e-6)
    assert net.forward_features(images).shape == (2, 128, 3, 3) and supports_cam(net)


class _Session:
    def __init__(self, probe_score):
        self.state = {"probe": {"val_balanced_accuracy": probe_score},
                      "transfer_check": {"baseline_balanced_accuracy": 0.95}}


def test_a_damaged_size_in_the_checkpoint_is_a_clear_message():
    assert scratch_from_meta(2, {"scratch_size": 48}).size == 48
    for size in ("48", 3, 10 ** 9, None):
        with pytest.raises(UserError, match="damaged"):
            scratch_from_meta(2, {"scratch_size": size})


def test_the_small_network_is_taken_only_when_clearly_better_than_the_probe():
    fit = ScratchFit(ScratchNet(2), 20, 0.1, 1.0, 0.2, 0.95, 0.95)
    assert not scratch_wins(_Session(0.94), fit)
    assert not scratch_wins(_Session(None), fit)             # no probe figure (an older run): never
    session = _Session(0.80)
    assert scratch_wins(session, fit)
    assert session.state["transfer_check"]["delivered_scratch"]
    assert session.state["transfer_check"]["pretrained_balanced_accuracy"] == 0.80


@pytest.fixture
def scratch_always_wins(monkeypatch):
    """The decision is tested above; here the demo images (where pretraining helps) take the other path."""
    monkeypatch.setattr(loop, "scratch_wins", lambda s, fit: s.state["transfer_check"].update(
        pretrained_balanced_accuracy=0.5, delivered_scratch=True) or True)
    real = baseline_folds.compare_candidates

    def scratch_chosen(*args, **kwargs):    # the cross-validated choice (a small set) takes the small network too
        return dataclasses.replace(real(*args, **kwargs), chosen="scratch")

    monkeypatch.setattr(baseline_folds, "compare_candidates", scratch_chosen)
    monkeypatch.setattr(baseline_folds, "MAX_SMALL_NETWORKS", 1)    # one network: the rounds are tested below


def _new_run(tmp_path, budget: float = 20.0, orientation: str = "auto"):
    data = copy_demo_subset(tmp_path / "images", 12, ("grass", "gravel"))
    run = tmp_path / "run"
    create_run(run, data, TrainConfig(budget=budget, num_workers=0, orientation=orientation), SPLIT)
    return run, data


def test_a_run_that_takes_the_small_network_evaluates_and_exports_it(tmp_path, scratch_always_wins):
    run, data = _new_run(tmp_path)
    events = list(train_run(run))
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.stage for e in epochs] == ["probe", "scratch"]
    assert "(small network trained from scratch)" in describe(epochs[1])
    assert any(isinstance(e, Message) and "fine-tuning is skipped" in e.text for e in events)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["transfer_check"]["delivered_scratch"] and metrics["best_epoch"] == 2
    assert "fine-tuning the pretrained backbone was skipped" in " ".join(metrics["cautions"])
    assert "small network" in summarize_run(run).recipe and "trained from scratch" in summarize_run(run).recipe
    retrain = retrain_config(run)              # label assist's Retrain cannot continue it: it starts afresh
    assert not retrain.continued and "trained from scratch" in retrain.note
    model, meta = model_from_checkpoint(run)   # one small network, or several averaged (the budget allowed)
    networks = model.members if isinstance(model, Ensemble) else [model]
    assert all(isinstance(m, ScratchNet) for m in networks)
    assert len(networks) == metrics["cross_validation"]["small_networks"]
    assert evaluate_run(run)["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    result = export_onnx(run, tmp_path / "model.onnx")
    assert result.parity_ok and result.metadata["arch"] == meta["arch"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    assert CAM_OUTPUT in [o.name for o in session.get_outputs()]
    size = json.loads(result.metadata["input_size"])[-1]
    probabilities = session.run(None, {"input": np.zeros((1, 3, size, size), np.float32)})[0]
    assert probabilities.shape == (1, 2) and abs(probabilities.sum() - 1) < 1e-5


def test_a_run_stopped_after_the_small_network_resumes_into_its_evaluation(tmp_path, scratch_always_wins):
    run, _ = _new_run(tmp_path)
    events = train_run(run)
    for event in events:                 # the process ends right after the small network's epoch is saved
        if isinstance(event, CheckpointSaved) and event.epoch == 2:
            break
    events.close()
    assert open_run(run).status == "interrupted" and not (run / "metrics.json").exists()
    assert checkpoint.read_meta(run / checkpoint.LAST)["arch"] in (SCRATCH_ARCH, ENSEMBLE_ARCH)
    events = list(train_run(run))
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    assert not [e for e in events if isinstance(e, EpochEnd)]          # nothing trained again
    assert json.loads((run / "metrics.json").read_text())["transfer_check"]["delivered_scratch"]


def test_while_the_budget_allows_more_small_networks_join_the_average_if_they_help(tmp_path, scratch_always_wins,
                                                                                   monkeypatch):
    # whether one helps is a pure function of out-of-fold losses (test_cross_validation); here every one does
    monkeypatch.setattr(baseline_folds, "log_loss_gain", lambda *args: (1.0, 0.0))
    monkeypatch.setattr(baseline_folds, "MAX_SMALL_NETWORKS", 3)
    monkeypatch.setattr(probe_fit, "lower_loss_beyond_noise", lambda *args: True)    # and flipped copies averaged
    run, _ = _new_run(tmp_path, budget=20.0, orientation="free")
    events = list(train_run(run))
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    texts = [e.text for e in events if isinstance(e, Message)]
    assert any(t.startswith("Another small network lowers the out-of-fold loss") for t in texts)
    model, meta = model_from_checkpoint(run)
    networks = json.loads((run / "metrics.json").read_text())["cross_validation"]["small_networks"]
    assert networks > 1 and isinstance(model, Ensemble) and len(model.members) == networks
    assert model.views == ("identity", "hflip", "vflip", "rot90")
    assert summarize_run(run).recipe.endswith(f"average of {networks} small networks trained from scratch, averaged "
                                              "over flipped or turned copies")
    assert all(isinstance(m, ScratchNet) for m in model.members)
    assert any(t.startswith(f"Averaging {networks} small networks") for t in texts)
    result = export_onnx(run, tmp_path / "model.onnx")
    assert result.parity_ok     # one graph; the networks' heat maps have one size and are averaged, over views too
    assert CAM_OUTPUT in [o.name for o in ort.InferenceSession(str(tmp_path / "model.onnx")).get_outputs()]
