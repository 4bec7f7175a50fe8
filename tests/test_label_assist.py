"""Label assist: unlabelled images ranked least certain first, written as a labels CSV that imports once the
expert fills its label column."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from desktop_tl.cli import main
from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.deploy.export import export_onnx
from desktop_tl.core.deploy.label_assist import least_certain_first
from desktop_tl.core.events import Finished
from desktop_tl.core.runs.folder import create_run
from desktop_tl.core.training.run import train_run

from helpers import DEMO_IMAGES, copy_demo_subset


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("assist")
    data = copy_demo_subset(root / "labelled", 12, ("grass", "gravel"))
    run = root / "run"
    config = TrainConfig(recipe="custom", epochs=2, image_size=64, freeze="head", augment="none", num_workers=0)
    create_run(run, data, config, SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0))
    assert isinstance(list(train_run(run))[-1], Finished)
    assert export_onnx(run).parity_ok
    unlabelled = root / "new scans"
    unlabelled.mkdir()
    truth = {}
    for name in ("grass", "gravel"):
        for image in sorted((DEMO_IMAGES / name).glob("*.jpg"))[20:25]:        # not among the labelled ones
            shutil.copy(image, unlabelled / image.name)
            truth[image.name] = name
    return run, unlabelled, truth


def test_suggest_ranks_the_least_certain_first_and_the_filled_csv_imports(exported_run, tmp_path, capsys):
    run, unlabelled, truth = exported_run
    out = tmp_path / "to label.csv"
    assert main(["suggest", str(run), str(unlabelled), "--out", str(out)]) == 0
    assert "Wrote 10 images" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 10 and all(row["label"] == "" for row in rows)
    for name in ("grass", "gravel"):                                # each class's least certain first
        margins = [float(row["margin"]) for row in rows if row["suggested"] == name]
        assert margins == sorted(margins)
    assert all(row["suggested"] in ("grass", "gravel") and not row["path"].startswith("/") for row in rows)

    for row in rows:                                                 # the expert fills in the labels
        row["label"] = truth[row["path"].rsplit("/", 1)[-1]]
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    index = import_dataset(out)
    assert len(index.samples) == 10 and index.classes == ["grass", "gravel"]
    assert index.attribute_names() == []                 # the suggestion columns are not subgroups


def test_the_ranking_takes_the_least_certain_of_each_suggested_class_in_turns():
    probabilities = np.array([[0.90, 0.05, 0.05],     # 0: class 0, sure
                              [0.40, 0.35, 0.25],     # 1: class 0, margin 0.05
                              [0.45, 0.30, 0.25],     # 2: class 0, margin 0.15
                              [0.10, 0.50, 0.40],     # 3: class 1, margin 0.10
                              [0.05, 0.15, 0.80]])    # 4: class 2, sure
    assert least_certain_first(probabilities).tolist() == [1, 3, 4, 2, 0]


def test_suggest_exports_a_finished_run_first_and_says_so(exported_run, tmp_path, capsys):
    run, unlabelled, _ = exported_run
    unexported = run.with_name("run-not-exported")                  # beside it: the dataset path still holds
    shutil.copytree(run, unexported)
    for name in ("model.onnx", "export.json"):
        (unexported / name).unlink()
    assert main(["suggest", str(unexported), str(unlabelled), "--out", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "has no exported model yet: exporting it first" in out and "Wrote 10 images" in out
    assert (unexported / "model.onnx").is_file()
    assert main(["suggest", str(tmp_path), str(unlabelled), "--out", str(tmp_path / "t.csv")]) == 2
    assert "has not finished" in capsys.readouterr().err              # a folder with no finished run


def test_copied_confirmed_labels_still_name_the_same_images_from_another_folder(tmp_path):
    from desktop_tl.core.data.confirmed import copy_confirmed, read_confirmed, save_confirmed

    shared = tmp_path / "runs" / "confirmed_labels.csv"
    save_confirmed(shared, {"../scans/a.png": "grass", "../scans/b.png": "gravel"})
    own = tmp_path / "projects" / "study" / "study.confirmed.csv"
    save_confirmed(own, {"../../scans/c.png": "grass"})
    assert copy_confirmed(shared, own) == 3
    assert read_confirmed(own) == {"../../scans/a.png": "grass", "../../scans/b.png": "gravel",
                                   "../../scans/c.png": "grass"}
    assert read_confirmed(shared) == {"../scans/a.png": "grass", "../scans/b.png": "gravel"}    # left as it was
