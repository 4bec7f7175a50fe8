"""The referral target chosen again after training, on the held-out predictions the run kept (no model run):
the lowest target the images can show, the rule saved in run.json, `evaluate --refer-target`, the Referral tab."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from desktop_tl.cli import main
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.referral import REFUSE_ALL, lowest_target
from desktop_tl.core.evaluation.referral_target import choose_referral_target
from desktop_tl.core.runs.folder import RunFolder


def _held_out(n: int = 300, wrong_share: float = 0.12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four-class held-out predictions: right and sure, or wrong and unsure (so that referral can help)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    probs = np.full((n, 4), 0.02)
    for i, y in enumerate(labels):
        if rng.random() < wrong_share:
            probs[i, (y + 1) % 4], probs[i, y] = 0.5, 0.44
        else:
            probs[i, y] = 0.94
    return labels, probs


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy of the shared run beside it, whose stored validation predictions are 300 synthetic ones."""
    copy = trained_run.with_name(f"run_refer_{tmp_path.name}")
    shutil.copytree(trained_run, copy)
    labels, probs = _held_out()
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["val"]["class_scores"] = {"labels": labels.tolist(), "probabilities": probs.round(5).tolist()}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    yield copy
    shutil.rmtree(copy)


def test_the_lowest_target_the_held_out_images_can_show():
    labels, probs = _held_out()
    classes = ["a", "b", "c", "d"]
    target, coverage = lowest_target(labels, probs, classes)
    right_and_sure = float(np.mean(probs.max(axis=1) > 0.9))
    assert target == 0.02 and coverage == pytest.approx(right_and_sure)   # 1% needs 299 right answers: too few
    wrong = (labels + 1) % 4                                     # a model wrong about every image
    assert lowest_target(wrong, probs, classes) is None


def test_a_target_is_chosen_again_and_saved_without_training(run):
    referral, words = choose_referral_target(run, 0.05)
    assert referral is not None and referral.threshold < REFUSE_ALL and referral.target == 0.05
    assert RunFolder(run).info().referral == referral and "answers when the probability" in words
    off, words = choose_referral_target(run, 0)
    assert off is None and RunFolder(run).info().referral is None and "Referral is off" in words
    with pytest.raises(UserError, match="between 0"):
        choose_referral_target(run, 0.7)


def test_evaluate_refer_target_saves_it_and_says_so(run, capsys):
    assert main(["evaluate", str(run), "--refer-target", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "Saved in run.json." in out and "Export the model again" in out
    assert RunFolder(run).info().referral.target == 0.1
