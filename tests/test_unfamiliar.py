"""Knowing when not to answer, end to end: a run fits the referral rule and the check for unfamiliar images,
the export carries both, and `predict` applies them with onnxruntime alone."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import skimage.data
from PIL import Image

from desktop_tl.core.decision import ANSWERED, STATUS_RULES_KEY, UNCERTAIN, UNFAMILIAR, UNFAMILIARITY_OUTPUT
from desktop_tl.core.deploy.export import export_onnx
from desktop_tl.core.deploy.predict import OnnxClassifier, collect_inputs, describe_decision
from desktop_tl.core.runs.folder import DETECTOR_FILE, open_run

from helpers import copy_demo_subset

FOREIGN = ("astronaut", "camera", "text", "page", "coffee", "chelsea", "moon", "horse", "checkerboard", "clock")


@pytest.fixture(scope="module")
def knowing_run(tmp_path_factory) -> Path:
    """A finished head-only run on 4 texture classes x 36 photos (64 px), with a 20% referral target so that 36
    validation images can support a threshold, exported."""
    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.events import Failed
    from desktop_tl.core.runs.folder import create_run
    from desktop_tl.core.training.run import train_run

    root = tmp_path_factory.mktemp("knowing")
    data = copy_demo_subset(root / "data", 36)
    run_dir = root / "run"
    config = TrainConfig(recipe="custom", epochs=1, batch_size=16, image_size=64, num_workers=0, augment="none",
                         refer_target=0.2)
    create_run(run_dir, data, config, SplitConfig(val_fraction=0.25, test_fraction=0.15, seed=1))
    events = list(train_run(run_dir))
    assert not any(isinstance(e, Failed) for e in events), events[-1]
    export_onnx(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def foreign_images(tmp_path_factory) -> Path:
    """Photographs, text, a checkerboard and blank frames: nothing like brick, coins, grass or gravel."""
    folder = tmp_path_factory.mktemp("foreign")
    for name in FOREIGN:
        picture = getattr(skimage.data, name)()
        Image.fromarray(picture.astype(np.uint8) * (255 if picture.dtype == bool else 1)).save(folder / f"{name}.png")
    Image.new("RGB", (96, 96), "white").save(folder / "blank_white.png")
    Image.new("RGB", (96, 96), "black").save(folder / "blank_black.png")
    return folder


def test_the_run_records_both_rules_and_their_held_out_figures(knowing_run):
    info = open_run(knowing_run)
    assert info.referral is not None and info.referral.target == 0.2 and info.referral.chosen_on == "validation"
    assert info.familiarity is not None and info.familiarity.flagged_share == 0.05
    assert (knowing_run / DETECTOR_FILE).is_file()
    metrics = json.loads((knowing_run / "metrics.json").read_text())
    referral = metrics["referral"]
    assert referral["val"]["images"] == 36 and referral["val"]["error_among_answered"] <= 0.2
    assert referral["test"]["images"] == 20 and 0 <= referral["test"]["coverage"] <= 1
    assert metrics["risk_coverage"]["val"]["coverage"][-1] == 1.0
    unfamiliar = metrics["unfamiliar"]
    assert unfamiliar["test"]["images"] == 20 and unfamiliar["test"]["flagged"] <= 5
    assert sum(metrics["test"]["statuses"].values()) == 20


def test_the_exported_model_carries_the_rules_and_the_score(knowing_run):
    model = onnx.load(str(knowing_run / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["referral"])["threshold"] == open_run(knowing_run).referral.threshold
    assert json.loads(props["familiarity"])["method"] == "mahalanobis"
    assert [o.name for o in model.graph.output][-1] == UNFAMILIARITY_OUTPUT
    stored = json.loads((knowing_run / "export.json").read_text())
    assert stored["parity_ok"] and "unfamiliarity_batch_7" in stored["parity_max_abs_diff"]


def test_foreign_images_are_flagged_through_onnxruntime_alone(knowing_run, foreign_images, tmp_path):
    """torch cannot be imported; the planted foreign images come back unfamiliar, in the CSV and the JSON."""
    data = knowing_run.parent / "data"
    out_csv = tmp_path / "out.csv"
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; sys.modules['timm'] = None\n"
        "from desktop_tl.cli import main\n"
        f"rc = main(['predict', {str(knowing_run / 'model.onnx')!r}, {str(foreign_images)!r}, {str(data)!r},"
        f" '--csv', {str(out_csv)!r}, '--json'])\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)              # standard output is the JSON document alone
    assert f"Wrote 156 rows to {out_csv}" in done.stderr
    by_path = {p["path"]: p for p in document["predictions"]}
    foreign = [p for path, p in by_path.items() if path.startswith(str(foreign_images))]
    own = [p for path, p in by_path.items() if path.startswith(str(data))]
    assert len(foreign) == 12 and len(own) == 144
    assert sum(p["status"] == UNFAMILIAR for p in foreign) >= 11
    assert sum(p["status"] == UNFAMILIAR for p in own) <= 0.1 * len(own)
    assert "Unfamiliar images" in document["rules"] and "Referral" in document["rules"]
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0])[:4] == ["path", "label", "probability", "status"]
    assert {r["path"]: r["status"] for r in rows} == {path: p["status"] for path, p in by_path.items()}


def test_uncertain_means_below_the_referral_threshold(knowing_run):
    classifier = OnnxClassifier(knowing_run / "model.onnx")
    threshold = classifier.referral.threshold
    for p in classifier.predict_files(collect_inputs([knowing_run.parent / "data" / "coins"])):
        if p.status != UNFAMILIAR:
            assert (p.status == UNCERTAIN) == (p.probability < threshold), p
    assert classifier.has_status_rule


def test_a_model_exported_before_the_rules_still_predicts_and_says_so(knowing_run, tmp_path):
    model = onnx.load(str(knowing_run / "model.onnx"))
    keep = [p for p in model.metadata_props if p.key not in ("referral", "familiarity", STATUS_RULES_KEY)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    outputs = [o for o in model.graph.output if o.name != UNFAMILIARITY_OUTPUT]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    classifier = OnnxClassifier(old)
    predictions = list(classifier.predict_files(collect_inputs([knowing_run.parent / "data" / "grass"])))
    assert len(predictions) == 36 and {p.status for p in predictions} == {ANSWERED}
    assert not classifier.has_status_rule
    words = describe_decision(classifier.decision, classifier.calibration, classifier.referral,
                              classifier.familiarity, classifier.has_status_rule)
    assert "no status rule" in words


def test_a_run_without_the_rules_says_why_every_image_is_answered():
    words = describe_decision(None, None, None, None, status_rule=True)
    assert "Every image is answered" in words and "no status rule" not in words


def test_the_threshold_is_the_conformal_quantile_of_the_held_out_scores():
    from desktop_tl.core.evaluation.familiarity import choose_familiarity

    assert choose_familiarity(np.arange(1.0, 101.0)).threshold == 96.0      # ceil(101 * 0.95) = 96th of 100
    assert choose_familiarity(np.arange(1.0, 20.0)).threshold == 19.0       # 19 scores: none is flagged
    rng = np.random.default_rng(0)                                          # new images flagged: at most 5% on average
    flagged = [(rng.normal(size=5000) > choose_familiarity(rng.normal(size=40)).threshold).mean() for _ in range(400)]
    assert np.mean(flagged) <= 0.05
