"""Subgroups: figures per site (a CSV column) or per DICOM acquisition tag, with cautions for small groups
and for a group the model does worse on; identifying CSV columns are never read."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from desktop_tl.cli import main
from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.evaluation.subgroups import subgroup_cautions, subgroup_figures, subgroup_report
from desktop_tl.core.events import Finished
from desktop_tl.core.runs.folder import create_run, load_index
from desktop_tl.core.training.run import train_run

from helpers import copy_demo_subset


def test_figures_per_group_with_known_answers_and_cautions():
    # site A: 40 images all right; site B: 40 images, 20 wrong; site C: 6 images.
    labels = np.array([0, 1] * 20 + [0, 1] * 20 + [0, 1] * 3)
    right = np.array([True] * 40 + [True, False] * 20 + [True] * 6)
    predicted = np.where(right, labels, 1 - labels)
    probs = np.stack([1.0 - predicted, predicted], axis=1).astype(float)
    sites = ["A"] * 40 + ["B"] * 40 + ["C"] * 6
    figures = subgroup_figures(labels, probs, ["no", "yes"], sites)
    assert list(figures) == ["A", "B", "C"]
    assert figures["A"]["accuracy"] == 1.0 and figures["B"]["accuracy"] == 0.5 and figures["C"]["images"] == 6
    assert figures["B"]["sensitivity"] == 0.0 and figures["B"]["positives"] == 20   # every positive of B missed
    low, high = figures["B"]["accuracy_95ci"]
    assert low < 0.5 < high < 1.0
    notes = subgroup_cautions({"site": figures})
    assert any("'C'" in n and "fewer than 20" in n for n in notes)
    assert any("worse on 'B'" in n for n in notes) and not any("worse on 'A'" in n for n in notes)
    ids = [f"id{i}" for i in range(len(labels))]                    # one value per image: an identifier, left out
    assert subgroup_report(labels, probs, ["no", "yes"], [{"site": s, "code": c} for s, c in zip(sites, ids)]) \
        .keys() == {"site"}


def _csv_dataset(root, per_class=24):
    images = copy_demo_subset(root / "images", per_class, ("grass", "gravel"))
    lines = ["path,label,site,Patient Name"]
    for i, image in enumerate(sorted(images.rglob("*.jpg"))):
        lines.append(f"images/{image.parent.name}/{image.name},{image.parent.name},{'north' if i % 2 else 'south'},"
                     f"Doe^Jane{i}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "labels.csv"


def test_csv_columns_become_attributes_and_identifying_ones_are_refused(tmp_path):
    index = import_dataset(_csv_dataset(tmp_path))
    assert index.attribute_names() == ["site"]
    assert {s.attribute("site") for s in index.samples} == {"north", "south"}
    assert any("Patient Name" in w and "identify people" in w for w in index.warnings)
    run = tmp_path / "run"
    create_run(run, index, TrainConfig(recipe="custom"), SplitConfig())
    assert "Doe^Jane" not in (run / "dataset.json").read_text()
    assert {s.attribute("site") for s in load_index(run).samples} == {"north", "south"}    # kept in the run


def test_dicom_acquisition_tags_become_attributes(tmp_path):
    for i, (name, sample) in enumerate([("a", "CT_small.dcm"), ("b", "MR_small.dcm")] * 3):
        ds = pydicom.dcmread(get_testdata_file(sample))
        ds.InstanceNumber = i + 1
        (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
        ds.save_as(tmp_path / "data" / name / f"{i}.dcm")
    index = import_dataset(tmp_path / "data")
    assert "Modality" in index.attribute_names()
    assert {s.attribute("Modality") for s in index.samples} == {"CT", "MR"}


@pytest.fixture(scope="module")
def site_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    run = root / "run"
    config = TrainConfig(recipe="custom", epochs=1, image_size=64, freeze="head", augment="none", num_workers=0)
    create_run(run, _csv_dataset(root), config, SplitConfig(val_fraction=0.25, test_fraction=0.4, seed=0))
    assert isinstance(list(train_run(run))[-1], Finished)
    return run


def test_a_run_reports_its_test_figures_per_site_and_the_cli_shows_one_attribute(site_run, capsys):
    metrics = json.loads((site_run / "metrics.json").read_text())
    groups = metrics["subgroups"]["test"]["site"]
    assert set(groups) == {"north", "south"}
    assert sum(g["images"] for g in groups.values()) == metrics["test"]["images"]
    assert main(["evaluate", str(site_run), "--by", "site"]) == 0
    out = capsys.readouterr().out
    assert "test by site:" in out and "north" in out and "south" in out
    assert main(["evaluate", str(site_run), "--by", "scanner"]) == 2
    assert "Known attributes: site" in capsys.readouterr().err
