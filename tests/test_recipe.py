"""The automatic recipe end to end on real demo images: plan, probe, fine-tune, check, threshold, export, predict."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import onnx
import pytest

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.deploy.export import export_onnx
from desktop_tl.core.evaluation.splits import evaluate_run
from desktop_tl.core.events import EpochEnd, Failed, Finished, Message, Planned, RunStarted
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import create_run, open_run
from desktop_tl.core.training import throughput
from desktop_tl.core.training.plan import Plan
from desktop_tl.core.training.run import train_run

from helpers import copy_demo_subset, train_until_saved

SPLIT = SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0)
BUDGET = 20.0


def _imbalanced(target):
    """Two real classes, 2:1: grass (20) and gravel (10)."""
    copy_demo_subset(target, 20, ("grass",))
    return copy_demo_subset(target, 10, ("gravel",))


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    data = _imbalanced(tmp_path_factory.mktemp("data") / "images")
    run = tmp_path_factory.mktemp("runs") / "auto"
    create_run(run, data, TrainConfig(budget=BUDGET, num_workers=0), SPLIT)
    events = list(train_run(run))
    assert isinstance(events[-1], Finished) and events[-1].completed, events[-1]
    return run, events, data


def test_the_plan_is_shown_first_and_recorded(auto_run):
    run, events, _ = auto_run
    assert isinstance(events[0], Message) and events[0].text.startswith("Planning the run: measuring how fast")
    started, planned = events[1], events[2]           # what is being prepared, then the run and its plan
    assert isinstance(started, RunStarted) and isinstance(planned, Planned) and not planned.resumed
    plan = Plan.from_dict(open_run(run).plan)
    assert plan.recipe == "auto" and plan.to_dict() == planned.plan
    assert [s.kind for s in plan.stages][0] == "probe" and plan.class_weighted and plan.choose_threshold
    assert started.total_epochs == plan.total_epochs
    assert plan.estimated_seconds["total"] <= BUDGET
    assert any(line.startswith("  1. Linear probe") for line in planned.lines)
    assert any(line.startswith("  Why: Planned with this computer's speed for efficientnet_lite0 at ")
               and "images/s fine-tuning" in line for line in planned.lines)      # which speed the plan used


def test_the_probe_is_the_first_epoch_and_the_rest_fine_tune(auto_run):
    run, events, _ = auto_run
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert epochs[0].stage == "probe" and all(e.stage == "finetune" for e in epochs[1:])
    assert any(isinstance(e, Message) and e.text.startswith("Linear probe:") for e in events)
    meta = checkpoint.read_meta(run / checkpoint.LAST)
    assert meta["probe"]["view_set"] in ("fixed", "mirror", "free") and meta["history"][0]["stage"] == "probe"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["recipe"] == "auto" and metrics["plan"]["recipe"] == "auto"
    check = metrics["transfer_check"]
    assert 0 <= check["baseline_balanced_accuracy"] <= 1 and isinstance(check["helps"], bool)
    assert check["verdict"] in ("helps", "no clear gain", "hurts")
    assert any(isinstance(e, Message) and "Pretraining" in e.text for e in events)


def test_the_threshold_is_chosen_on_validation_and_used_by_evaluate(auto_run):
    run, _, _ = auto_run
    decision = open_run(run).decision
    assert decision is not None and decision.positive == "gravel" and 0 <= decision.threshold <= 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["decision"] == decision.to_dict() == metrics["test"]["decision"]
    again = evaluate_run(run)
    assert again["test"]["decision"] == decision.to_dict()
    assert again["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]


def test_the_threshold_travels_in_the_onnx_file_and_predict_applies_it_without_torch(auto_run, tmp_path):
    run, _, data = auto_run
    result = export_onnx(run, tmp_path / "model.onnx")
    decision = open_run(run).decision
    assert json.loads(result.metadata["decision"]) == decision.to_dict()
    model = onnx.load(str(tmp_path / "model.onnx"))
    labels = {}
    for name, threshold in (("always", 0.0), ("strict", 1.0), ("exported", decision.threshold)):
        for prop in model.metadata_props:
            if prop.key == "decision":
                prop.value = json.dumps(dict(decision.to_dict(), threshold=threshold))
        path = tmp_path / f"{name}.onnx"
        onnx.save_model(model, str(path))
        code = ("import sys; sys.modules['torch'] = None; sys.modules['timm'] = None\n"
                "from desktop_tl.cli import main\n"
                f"sys.exit(main(['predict', {str(path)!r}, {str(data)!r}, '--csv', {str(tmp_path / name)!r}]))\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Decision: 'gravel' when its probability is at least" in done.stdout
        rows = list(csv.DictReader((tmp_path / name).open()))
        assert len(rows) == 30
        labels[name] = [row["label"] for row in rows]
        for row in rows:                       # the rule, image by image (6 decimals in the CSV)
            p = float(row["gravel"])
            if abs(p - threshold) > 1e-5:
                assert row["label"] == ("gravel" if p >= threshold else "grass"), (threshold, row)
    assert set(labels["always"]) == {"gravel"} and labels["exported"] != labels["always"]


def test_an_interrupted_auto_run_resumes_on_the_plan_it_started_with(tmp_path, monkeypatch):
    data = _imbalanced(tmp_path / "images")
    run = tmp_path / "run"
    create_run(run, data, TrainConfig(budget=BUDGET, num_workers=0), SPLIT)
    first = train_until_saved(run, epoch=1)                       # stopped once the probe's epoch is saved
    assert isinstance(first[-1], Finished) and first[-1].stopped_by_user and first[-1].epochs_done == 1
    plan = open_run(run).plan
    monkeypatch.setattr(throughput, "measure_throughput", lambda *a, **k: pytest.fail("planned again on resume"))
    events = list(train_run(run))
    assert not any(isinstance(e, Failed) for e in events), events[-1]
    assert events[0].start_epoch == 2 and isinstance(events[1], Planned) and events[1].resumed
    assert events[1].plan == plan == open_run(run).plan
    assert isinstance(events[-1], Finished) and events[-1].completed and open_run(run).finished
