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


def test_a_run_from_imported_weights_copied_to_another_account_still_reviews_its_labels(tmp_path, monkeypatch,
                                                                                       small_dataset):
    import shutil

    import torch

    from desktop_tl.core.models.factory import create_model
    from desktop_tl.core.models.store import import_weights
    from desktop_tl.core.runs.folder import START_WEIGHTS
    from desktop_tl.core.training.run import train_run

    weights_file = tmp_path / "my-weights.pt"
    torch.save(create_model("efficientnet_lite0", "bundled", 4)[0].state_dict(), weights_file)
    stored = import_weights(weights_file, "efficientnet_lite0")      # as Retrain imports a run's best checkpoint
    study = tmp_path / "study"
    shutil.copytree(small_dataset, study / "data")
    create_run(study / "run", study / "data", TrainConfig(recipe="custom", weights=f"imported:{stored.id}", epochs=1,
                                                          freeze="head", image_size=64, num_workers=0),
               SplitConfig(0.25, 0.25, seed=0))
    assert (study / "run" / START_WEIGHTS).is_file()                 # the folder keeps what it started from
    assert list(train_run(study / "run"))[-1].completed
    moved = tmp_path / "other-machine" / "study"                       # copied to another account's disk...
    shutil.copytree(study, moved)
    monkeypatch.setenv("DESKTOP_TL_DATA_DIR", str(tmp_path / "other-machine" / "empty-store"))   # ...no model store
    suspects = review_labels(moved / "run")
    assert isinstance(suspects, list) and (moved / "run" / REVIEW_FILE).is_file()
