"""The anytime budget of a fine-tuned model (core.training.members): when fine-tuning ends with time to spare,
further fine-tuned networks (other seeds) join the average while each lowers the validation loss; the rounds
end, and say why, when one would not help, when the budget holds no more, or at the recipe's limit. A run
stopped during a round resumes it; the average exports as one graph that onnxruntime and PyTorch agree on,
with heat maps."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from desktop_tl.core.config import BUDGET_PRESETS, SplitConfig, TrainConfig
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.deploy.export import export_onnx, parity_images
from desktop_tl.core.deploy.predict import OnnxClassifier
from desktop_tl.core.evaluation.report import build_report
from desktop_tl.core.events import BatchProgress, Finished, Message
from desktop_tl.core.models.delivered import ENSEMBLE_ARCH
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.runs.folder import create_run, load_index, open_run
from desktop_tl.core.runs.trained import model_from_checkpoint
from desktop_tl.core.training import members, planner
from desktop_tl.core.training.plan import DataSummary, ModelFacts, Throughput
from desktop_tl.core.training.run import RunControl, train_run

from helpers import copy_demo_subset

LAPTOP = Throughput("cpu", forward=((96, 320.0), (224, 60.0)), train=((96, 95.0), (224, 16.0)))
LARGE = DataSummary(train_counts=(1200, 600), val_images=400, test_images=400, median_side=300, grayscale=True)


def _session(seconds_so_far: float, networks: int = 1, **state):
    """What the rounds read of a run on 2,600 images (validated on its split) that fine-tuned 6 epochs of 60 s
    after a 40 s probe, best at epoch 6."""
    plan = planner.plan_auto(LARGE, ModelFacts("efficientnet_lite0", 224, True), LAPTOP, BUDGET_PRESETS["best"])
    history = [{"epoch": 1, "stage": "probe", "seconds": 40.0}] + [
        {"epoch": e, "stage": "finetune", "seconds": 60.0} for e in range(2, 8)]
    model = Ensemble([torch.nn.Identity()] * networks) if networks > 1 else torch.nn.Identity()
    return SimpleNamespace(plan=plan, main=True, world=1, arch=ENSEMBLE_ARCH if networks > 1 else "efficientnet_lite0",
                           cfg=SimpleNamespace(model="efficientnet_lite0"), val_set=[None] * 400, model=model,
                           state={"cross_validation": None, "refit": None, "history": history, "best_epoch": 6,
                                  "seconds": seconds_so_far, "ensemble": None, "members": None, **state})


def test_more_networks_are_due_only_for_a_fine_tuned_model_that_beat_the_probe_and_while_the_budget_holds_one():
    s = _session(600.0)
    assert members.members_due(s)
    assert members.member_seconds(s) == 40.0 + 6 * 60.0 + planner.START_SECONDS
    assert members.reason_to_stop(s) is None                          # 50 minutes of the hour left
    assert not members.members_due(_session(600.0, best_epoch=1))     # the probe stayed best: nothing to repeat
    assert not members.members_due(_session(600.0, ensemble="pending"))   # it averages the small network already
    assert not members.members_due(_session(600.0, members={"rounds": [], "done": True}))   # decided before a resume
    assert not members.members_due(_session(600.0, cross_validation={"trained_on_all": "scratch"}))
    words = members.reason_to_stop(_session(BUDGET_PRESETS["best"] - 400.0))
    assert words.startswith("The model is one fine-tuned network: another would take about 8 min")
    assert "the budget leaves" in words
    assert members.reason_to_stop(_session(600.0, networks=members.MAX_FINETUNED_NETWORKS)) == (
        f"Averaging {members.MAX_FINETUNED_NETWORKS} fine-tuned networks (the most the recipe averages).")
    short = _session(600.0)
    short.val_set = [None] * (members.MIN_VALIDATION_IMAGES - 1)        # too few images to judge a network by
    assert not members.members_due(short)


def test_the_plan_says_that_time_to_spare_trains_more_networks():
    plan = _session(0.0).plan
    assert any("the rest of the budget fine-tunes further networks" in line for line in plan.describe())


@pytest.fixture
def validated_small_run(tmp_path, monkeypatch):
    """A run on 24 real images that is validated on its split (as a set above the cross-validation cut-off is),
    with short fine-tuning, and whose 6 validation images may judge further networks."""
    monkeypatch.setattr(planner, "CV_MAX_IMAGES", 0)
    monkeypatch.setattr(planner, "MIN_TARGET_EPOCHS", 2)
    monkeypatch.setattr(planner, "MAX_TARGET_EPOCHS", 2)
    monkeypatch.setattr(members, "MIN_VALIDATION_IMAGES", 1)
    monkeypatch.setattr(members, "MAX_FINETUNED_NETWORKS", 2)
    data = copy_demo_subset(tmp_path / "images", 12, ("grass", "gravel"))
    run = tmp_path / "run"
    create_run(run, data, TrainConfig(budget=40.0, num_workers=0), SplitConfig(0.25, 0.25, seed=0))
    return run


def test_a_network_that_lowers_the_validation_loss_joins_the_average_a_stopped_round_resumes_and_the_refit_trains_the_first(
        tmp_path, monkeypatch):
    """On a small set (choices by cross-validation, here forced to the pretrained path): network 2 is kept, a
    Stop during its round resumes it, then the refit on train+val trains the first network again and the second
    keeps its weights; the average exports with heat maps, onnxruntime agreeing with PyTorch."""
    import dataclasses

    from desktop_tl.core.runs import checkpoint
    from desktop_tl.core.training import baseline_folds

    real = baseline_folds.compare_candidates
    monkeypatch.setattr(baseline_folds, "compare_candidates",       # the pretrained path, whatever the folds say
                        lambda *a, **k: dataclasses.replace(real(*a, **k), chosen="probe"))
    monkeypatch.setattr(planner, "MIN_TARGET_EPOCHS", 2)
    monkeypatch.setattr(planner, "MAX_TARGET_EPOCHS", 2)
    monkeypatch.setattr(members, "MIN_VALIDATION_IMAGES", 1)
    monkeypatch.setattr(members, "MAX_FINETUNED_NETWORKS", 2)
    monkeypatch.setattr(members, "MIN_LOSS_GAIN", -math.inf)     # on 6 easy images every gain is ~0: keep it
    data = copy_demo_subset(tmp_path / "images", 12, ("grass", "gravel"))
    run = tmp_path / "run"
    create_run(run, data, TrainConfig(budget=45.0, num_workers=0), SplitConfig(0.25, 0.25, seed=0))
    control, events = RunControl(), []
    for event in train_run(run, control):
        events.append(event)
        if isinstance(event, BatchProgress) and event.phase == "member" and event.epoch == 2:
            control.stop()                                      # Stop in the second network's second epoch
    assert isinstance(events[-1], Finished) and events[-1].stopped_by_user, events[-1]
    assert open_run(run).status == "interrupted" and (run / "member2" / "last.safetensors").is_file()
    resumed = list(train_run(run))                              # Resume: the round goes on from its epoch
    epochs = [e.epoch for e in resumed if isinstance(e, BatchProgress) and e.phase == "member"]
    assert epochs and min(epochs) >= 2
    assert isinstance(resumed[-1], Finished) and resumed[-1].completed, resumed[-1]
    texts = " ".join(e.text for e in events + resumed if isinstance(e, Message))
    assert "training fine-tuned network 2 (another seed" in texts and "2 are averaged" in texts
    assert "Averaging 2 fine-tuned networks (the most the recipe averages)." in texts
    assert not (run / "member2").exists()                       # its weights live in the run's checkpoints

    metrics = json.loads((run / "metrics.json").read_text())
    networks = metrics["finetuned_networks"]
    assert networks["averaged"] == 2 and networks["source"] == "validation"
    assert [r["kept"] for r in networks["rounds"]] == [True] and networks["rounds"][0]["seed"] == 1000
    model, meta = model_from_checkpoint(run)
    assert isinstance(model, Ensemble) and meta["arch"] == ENSEMBLE_ARCH
    assert [m["arch"] for m in meta["members"]] == ["efficientnet_lite0", "efficientnet_lite0"]
    first, second = (dict(m.named_parameters()) for m in model.members)
    assert any(not torch.equal(first[name], second[name]) for name in first)     # two networks, not one twice
    assert "average of 2 fine-tuned efficientnet_lite0 networks (other seeds)" in build_report(run)

    out = tmp_path / "average.onnx"
    result = export_onnx(run, out)
    assert result.parity_ok
    images = parity_images(load_index(run), Preprocessing.from_dict(meta["preprocessing"]))
    temperature = (json.loads((run / "run.json").read_text()).get("calibration") or {}).get("temperature", 1.0)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(images)) / temperature, 1).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": images})[0]
    assert np.abs(got - expected).max() < 1e-4
    assert OnnxClassifier(out).has_heatmaps                     # one backbone twice: their maps add up
    assert metrics["cross_validation"]["refit"]["images"] == 18
    best = checkpoint.load_checkpoint(run / "best.safetensors").model
    refitted = checkpoint.load_checkpoint(run / "refit" / "last.safetensors").model
    assert all(torch.equal(best[f"members.0.{name}"], value) for name, value in refitted.items())
    assert any(not torch.equal(best[f"members.1.{name}"], value) for name, value in refitted.items())


def test_a_network_that_would_not_help_is_not_kept_and_the_log_says_more_time_would_not_help(
        validated_small_run, monkeypatch):
    monkeypatch.setattr(members, "MIN_LOSS_GAIN", math.inf)
    events = list(train_run(validated_small_run))
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    texts = " ".join(e.text for e in events if isinstance(e, Message))
    assert "so more time would not help: the model averages 1 network, and the run ends with" in texts
    networks = events[-1].metrics["finetuned_networks"]
    assert networks["averaged"] == 1 and [r["kept"] for r in networks["rounds"]] == [False]
    _, meta = model_from_checkpoint(validated_small_run)
    assert meta["arch"] == "efficientnet_lite0" or len(meta["members"]) == 1

