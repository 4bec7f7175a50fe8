"""Suspected label errors with planted truth: 5% of a real image set's labels are flipped, and the flipped
images must rank at the top of the suspects (precision at k, k = the number flipped)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desktop_tl.cli import main
from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.runs.folder import create_run
from desktop_tl.core.training.label_review import REVIEW_FILE, confident_suspects, review_labels

from helpers import copy_demo_subset


def test_confident_learning_on_known_probabilities():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[.9, .1], [.8, .2], [.1, .9],      # row 2: labelled 0, clearly a 1
                      [.2, .8], [.3, .7], [.45, .55]])   # row 5: unsure, but not confidently another class
    assert confident_suspects(probs, labels) == [(2, 1)]


@pytest.fixture(scope="module")
def flipped_run(tmp_path_factory):
    """The 144 demo photographs (4 materials) listed in a CSV with 7 labels (5%) deliberately wrong."""
    root = tmp_path_factory.mktemp("noisy")
    images = copy_demo_subset(root / "images", 36)
    files = sorted(images.rglob("*.jpg"))
    classes = sorted({f.parent.name for f in files})
    rng = np.random.default_rng(0)
    flipped = set(rng.choice(len(files), size=7, replace=False).tolist())
    lines, wrong = ["path,label"], set()
    for i, f in enumerate(files):
        label = f.parent.name
        if i in flipped:
            label = classes[(classes.index(label) + 1 + int(rng.integers(len(classes) - 1))) % len(classes)]
            wrong.add(f"images/{f.parent.name}/{f.name}")
        lines.append(f"images/{f.parent.name}/{f.name},{label}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = root / "run"
    create_run(run, root / "labels.csv", TrainConfig(recipe="custom", num_workers=0),
               SplitConfig(val_fraction=0.2, test_fraction=0.15, seed=0))
    return run, wrong


def test_flipped_labels_rank_at_the_top_of_the_suspects(flipped_run, capsys, record_property):
    run, wrong = flipped_run
    index = json.loads((run / "dataset.json").read_text())
    reviewed = {s["path"] for s in index["samples"] if s["split"] in ("train", "val")}
    planted = wrong & reviewed                          # flipped images that landed in test are not reviewed
    suspects = review_labels(run)
    top = [s.path for s in suspects[:len(planted)]]
    precision = len(set(top) & planted) / len(planted)
    record_property("precision_at_k", f"{precision:.2f} at k={len(planted)}; {len(suspects)} suspects")
    assert precision >= 0.8, (top, planted)
    assert {s.path for s in suspects} >= planted        # every flipped one is on the list
    saved = json.loads((run / REVIEW_FILE).read_text())
    assert saved["reviewed"] == len(reviewed) and len(saved["suspects"]) == len(suspects)
    assert not any(s["path"].startswith("/") for s in saved["suspects"])
    capsys.readouterr()
    assert main(["review-labels", str(run), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{len(suspects)} images whose label looks wrong" in out and out.count("looks like") == 3
