"""The label review grid: keyboard decisions, undo, and Save writing the decisions and a corrected labels CSV
that imports (the user's files untouched)."""

from __future__ import annotations

import csv
import json

import pytest
from PySide6.QtCore import Qt

from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.training.label_review import REVIEW_FILE, Suspect
from desktop_tl.gui.evaluation.label_review_dialog import LabelReviewDialog

from helpers import copy_demo_subset


@pytest.fixture
def review(qtbot, tmp_path):
    data = copy_demo_subset(tmp_path / "data", 6, ("brick", "grass", "gravel"))
    index = import_dataset(data)
    paths = [s.path for s in index.samples]
    suspects = [Suspect(paths[0], "train", "brick", "grass", 0.1, 0.8),
                Suspect(paths[7], "train", "grass", "gravel", 0.2, 0.7),
                Suspect(paths[13], "val", "gravel", "brick", 0.3, 0.6)]
    run = tmp_path / "run"
    run.mkdir()
    (run / REVIEW_FILE).write_text(json.dumps({"suspects": []}))
    dialog = LabelReviewDialog(run, index, suspects)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog, index, run, data


def test_keyboard_decisions_undo_and_save(qtbot, review, tmp_path):
    dialog, index, run, data = review
    grid = dialog.grid
    qtbot.keyClick(grid, Qt.Key.Key_Return)                          # first: take the suggestion (grass)
    qtbot.keyClick(grid, Qt.Key.Key_X)                               # second: leave it out
    qtbot.keyClick(grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)   # no: undo that
    assert dialog.current().path == dialog.suspects[1].path and dialog.suspects[1].path not in dialog.decisions
    qtbot.keyClick(grid, Qt.Key.Key_K)                               # keep its label after all
    qtbot.keyClick(grid, Qt.Key.Key_1)                               # third: relabel as class 1 (brick)
    assert dialog.decisions == {dialog.suspects[0].path: {"action": "relabel", "label": "grass"},
                                dialog.suspects[1].path: {"action": "keep"},
                                dialog.suspects[2].path: {"action": "relabel", "label": "brick"}}
    assert "3 of 3 decided" in dialog.status.text()
    assert "→ grass" in dialog.model.data(dialog.model.index(0))

    before = sorted(p.name for p in data.rglob("*.jpg"))
    out = dialog.save(tmp_path / "corrected" / "labels.csv")
    assert out is not None and "2 relabelled, 0 left out" in dialog.status.text()
    assert sorted(p.name for p in data.rglob("*.jpg")) == before    # nothing moved or renamed
    assert json.loads((run / REVIEW_FILE).read_text())["decisions"] == dialog.decisions
    rows = {r["path"].split("/")[-1]: r["label"] for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert len(rows) == len(index.samples)
    assert rows[dialog.suspects[0].path.split("/")[-1]] == "grass"
    corrected = import_dataset(out)                                   # and it imports as a dataset
    assert len(corrected.samples) == len(index.samples)


def test_images_left_out_are_listed_with_their_reason_when_the_labels_csv_is_imported(qtbot, review, tmp_path):
    dialog, index, _, data = review
    qtbot.keyClick(dialog.grid, Qt.Key.Key_X)
    out = dialog.save(data.parent / "labels.csv")
    assert "1 left out" in dialog.status.text()
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == len(index.samples)                  # every image keeps its row, the left-out one with why
    excluded = [r for r in rows if r["excluded"]]
    assert len(excluded) == 1 and excluded[0]["path"].endswith(dialog.suspects[0].path)
    corrected = import_dataset(out)
    assert len(corrected.samples) == len(index.samples) - 1
    (skipped,) = corrected.skipped
    assert skipped.path.endswith(dialog.suspects[0].path)
    assert "left out in label review, suspected wrong label: given 'brick', the model says 'grass'" in skipped.reason
