"""Dataset import: layouts, CSV quirks, validation, splits, patient grouping and stored indexes."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from desktop_tl.core.config import SplitConfig
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.data.index import DatasetIndex, Sample, format_report
from desktop_tl.core.errors import Cancelled, UserError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_colours = itertools.count(1)


def _img(path: Path, suffix_ok: bool = True) -> Path:
    """A tiny image whose content differs from every other one made here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = next(_colours)
    Image.new("RGB", (8, 8), (n % 256, (n // 256) % 256, 99)).save(path, format="PNG")
    return path


def _class_folders(root: Path, sizes: dict[str, int]) -> Path:
    for name, n in sizes.items():
        for i in range(n):
            _img(root / name / f"{i:03d}.png")
    return root


def _split_of(index: DatasetIndex) -> dict[str, str]:
    return {s.path: s.split for s in index.samples}


def _csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


# --- folder layouts -------------------------------------------------------------------------


def test_class_folders_are_imported_and_split(tmp_path):
    root = _class_folders(tmp_path / "data", {"cats": 20, "dogs": 12})
    calls = []
    index = import_dataset(root, progress=lambda done, total: calls.append((done, total)))
    assert index.classes == ["cats", "dogs"]
    assert index.source_kind == "folder" and index.root == root
    assert len(index.samples) == 32 and not index.skipped
    assert calls[0] == (0, 32) and calls[-1] == (32, 32) and len(calls) == 33
    assert index.counts() == {"cats": {"train": 14, "val": 3, "test": 3}, "dogs": {"train": 8, "val": 2, "test": 2}}
    assert all(not Path(s.path).is_absolute() and "\\" not in s.path for s in index.samples)
    assert index.abs_path(index.samples[0]).is_file()
    assert {s.split for s in index.split("val")} == {"val"}


def test_split_rule_for_small_classes(tmp_path):
    root = _class_folders(tmp_path / "data", {"a": 2, "b": 3, "c": 4})
    counts = import_dataset(root).counts()
    assert counts["a"] == {"train": 2, "val": 0, "test": 0}
    assert counts["b"] == {"train": 1, "val": 1, "test": 1}
    assert counts["c"] == {"train": 2, "val": 1, "test": 1}
    counts = import_dataset(root, SplitConfig(val_fraction=0.4, test_fraction=0.4)).counts()
    assert counts["a"] == {"train": 1, "val": 1, "test": 0}


def test_splits_are_deterministic_with_the_seed(tmp_path):
    root = _class_folders(tmp_path / "data", {"a": 30, "b": 30})
    first = _split_of(import_dataset(root, SplitConfig(seed=3)))
    assert _split_of(import_dataset(root, SplitConfig(seed=3))) == first
    assert _split_of(import_dataset(root, SplitConfig(seed=4))) != first


def test_nested_hidden_stray_and_bad_files(tmp_path):
    root = _class_folders(tmp_path / "data", {"a": 3, "b": 3})
    _img(root / "a" / "deeper" / "more" / "x.png")
    _img(root / ".hidden" / "h.png")
    _img(root / "a" / ".secret.png")
    (root / "a" / "notes.txt").write_text("hello")
    (root / "b" / "labels.csv").write_text("x,y\n")
    (root / "b" / "empty.jpg").touch()
    (root / "b" / "fake.png").write_text("not really")
    (root / "readme.md").write_text("top-level")
    os.symlink(root / "nowhere.png", root / "a" / "dangling.png")
    index = import_dataset(root)
    paths = {s.path for s in index.samples}
    assert "a/deeper/more/x.png" in paths and len(paths) == 7
    skipped = {s.path: s.reason for s in index.skipped}
    assert skipped == {
        "readme.md": "not inside a class folder",
        "a/notes.txt": "not an image file type",
        "b/labels.csv": "not an image file type",
        "b/empty.jpg": "empty file (0 bytes)",
        "b/fake.png": "not an image (the file holds text)",
        "a/dangling.png": "not a regular file (broken link?)",
    }


def test_presplit_layout_is_kept(tmp_path):
    root = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2), ("test", 1)):
        _class_folders(root / split, {"x": n, "y": n})
    index = import_dataset(root, SplitConfig(seed=9))
    assert index.counts() == {"x": {"train": 4, "val": 2, "test": 1}, "y": {"train": 4, "val": 2, "test": 1}}
    assert all(s.path.startswith(s.split + "/") for s in index.samples)


def test_presplit_copy_across_splits_is_reported(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        _class_folders(root / split, {"x": 3, "y": 3})
    (root / "val" / "x" / "copy.png").write_bytes((root / "train" / "x" / "000.png").read_bytes())
    index = import_dataset(root)
    [dup] = index.duplicates
    assert dup.cross_split and sorted(dup.paths) == ["train/x/000.png", "val/x/copy.png"]
    assert any("different splits" in w for w in index.warnings)


def test_presplit_extras_and_patient_leaks(tmp_path):
    root = tmp_path / "data"
    for split, n in (("train", 2), ("validation", 1)):
        for i in range(n):
            _dicom_copy("CT_small.dcm", root / split / "ct" / f"{i}.dcm", "SAME-PATIENT", i)
            _dicom_copy("MR_small.dcm", root / split / "mr" / f"{i}.dcm", f"{split}-{i}", i)
    _class_folders(root / "extra", {"z": 2})
    (root / "train" / "readme.txt").write_text("x")
    index = import_dataset(root)
    assert index.counts() == {"ct": {"train": 2, "val": 1, "test": 0}, "mr": {"train": 2, "val": 1, "test": 0}}
    assert index.skipped[0].path == "train/readme.txt" and index.skipped[0].reason == "not inside a class folder"
    assert any("Folder 'extra' was ignored" in w for w in index.warnings)
    assert any("1 patients/groups have images in more than one" in w for w in index.warnings)


def test_presplit_class_without_training_images(tmp_path):
    root = tmp_path / "data"
    _class_folders(root / "train", {"x": 3, "y": 3})
    _class_folders(root / "val", {"x": 1, "y": 1, "only_val": 2})
    with pytest.raises(UserError, match="No usable training images for class 'only_val'"):
        import_dataset(root)


def test_train_and_test_without_val_take_validation_from_train_and_say_so(tmp_path):
    root = tmp_path / "data"
    _class_folders(root / "train", {"x": 10, "y": 10})
    _class_folders(root / "test", {"x": 3, "y": 3})
    index = import_dataset(root, SplitConfig(val_fraction=0.2, test_fraction=0.15, seed=1))
    assert index.counts() == {"x": {"train": 8, "val": 2, "test": 3}, "y": {"train": 8, "val": 2, "test": 3}}
    assert {s.split for s in index.samples if s.path.startswith("test/")} == {"test"}      # test/ as it is
    assert {s.path.split("/")[0] for s in index.samples if s.split == "val"} == {"train"}
    assert any(w.startswith("There is no val/ folder: the validation (20% of each class) images are taken from "
                            "train/") for w in index.warnings)
    only_train = tmp_path / "only"
    _class_folders(only_train / "train", {"x": 10, "y": 10})
    counts = import_dataset(only_train, SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=1)).counts()
    assert counts["x"] == {"train": 6, "val": 2, "test": 2}


def test_val_and_test_without_train_is_an_error(tmp_path):
    root = tmp_path / "data"
    _class_folders(root / "val", {"x": 3, "y": 3})
    _class_folders(root / "test", {"x": 3, "y": 3})
    with pytest.raises(UserError, match="no train/ folder"):
        import_dataset(root)


def test_duplicates_share_a_split(tmp_path):
    root = _class_folders(tmp_path / "data", {"a": 12, "b": 12})
    for i in range(3):
        (root / "a" / f"copy{i}.png").write_bytes((root / "a" / "005.png").read_bytes())
    index = import_dataset(root)
    [dup] = index.duplicates
    assert len(dup.paths) == 4 and not dup.cross_split
    assert len({_split_of(index)[p] for p in dup.paths}) == 1


def test_identical_files_under_two_labels(tmp_path):
    root = _class_folders(tmp_path / "data", {"x": 6})
    (root / "y").mkdir()
    for name in ("c1.png", "c2.png"):
        (root / "y" / name).write_bytes((root / "x" / "000.png").read_bytes())
    index = import_dataset(root)
    assert {_split_of(index)[p] for p in ("x/000.png", "y/c1.png", "y/c2.png")} == {"train"}
    assert any("'y': all its images are copies of one file" in w for w in index.warnings)
    assert any("1 identical files carry different labels" in w for w in index.warnings)


def test_unicode_names_and_spaces(tmp_path):
    root = tmp_path / "my data"
    _img(root / "café ☕" / "ñandú 🐦 1.png")
    _img(root / "café ☕" / "photo two.png")
    _img(root / "Ünïcode class" / "日本.png")
    _img(root / "Ünïcode class" / "b.png")
    index = import_dataset(root)
    assert index.classes == ["café ☕", "Ünïcode class"]
    assert "café ☕/ñandú 🐦 1.png" in {s.path for s in index.samples}
    json.dumps(index.to_report(), ensure_ascii=False)


def test_symlink_loops_do_not_hang(tmp_path):
    root = _class_folders(tmp_path / "data", {"a": 3, "b": 3})
    os.symlink("..", root / "a" / "up")  # points at the dataset root
    os.symlink(".", root / "b" / "self")
    outside = tmp_path / "elsewhere"
    _img(outside / "o1.png")
    _img(outside / "o2.png")
    os.symlink(outside, outside / "loop")
    os.symlink(outside, root / "c")  # a class folder kept elsewhere
    index = import_dataset(root)
    assert Counter(index.classes[s.label] for s in index.samples) == {"a": 3, "b": 3, "c": 2}


# --- CSV ------------------------------------------------------------------------------------


def test_csv_with_bom_semicolon_and_problem_rows(tmp_path):
    for i in range(6):
        _img(tmp_path / "imgs" / f"n{i}.png")
        _img(tmp_path / "imgs" / f"t{i}.png")
    _img(tmp_path / "imgs" / "unlabelled.png")
    rows = [f"imgs/n{i}.png;normal" for i in range(6)] + [f"imgs/t{i}.png;tumour" for i in range(6)]
    rows += ["imgs/n0.png;normal", "imgs/gone.png;normal", "imgs/unlabelled.png;", "", "imgs/n1.png;tumour"]
    csv_path = _csv(tmp_path / "labels.csv", "filename;diagnosis\n" + "\n".join(rows) + "\n", "utf-8-sig")
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")
    index = import_dataset(csv_path)
    assert index.source_kind == "csv" and index.root == tmp_path and index.source == csv_path
    assert index.classes == ["normal", "tumour"]
    assert len(index.samples) == 12  # n0's repeated line counted once
    reasons = {s.path: s.reason for s in index.skipped}
    assert reasons["imgs/gone.png"] == "line 15: file not found"
    assert reasons["imgs/unlabelled.png"] == "line 16: empty label"
    assert "listed again with label 'tumour'" in reasons["imgs/n1.png"]
    assert any("1 repeated lines" in w for w in index.warnings)
    assert any("1 files listed in labels.csv were not found" in w for w in index.warnings)


def test_csv_without_header_comma_and_absolute_path(tmp_path):
    a = [_img(tmp_path / "a" / f"{i}.jpg.png") for i in range(3)]
    b = [_img(tmp_path / "b" / f"{i}.png") for i in range(3)]
    lines = [f"a/{p.name},cat" for p in a[:2]] + [f"{a[2]},cat"] + [f"b/{p.name},dog" for p in b]
    lines.append(f"{tmp_path / 'gone.png'},dog")
    index = import_dataset(_csv(tmp_path / "list.csv", "\n".join(lines)))
    assert len(index.samples) == 6 and f"a/{a[2].name}" in {s.path for s in index.samples}
    assert index.skipped[0].path == "gone.png"
    assert str(tmp_path) not in json.dumps(index.to_report()) + json.dumps(index.to_json("list.csv"))


def test_csv_odd_rows_and_third_column_as_group(tmp_path):
    for i in range(4):
        _img(tmp_path / "sub" / f"{i}.png")
    (tmp_path / "sub" / "notes.txt").write_text("x")
    lines = ["sub\\0.png,a,P1", "sub/1.png,a,P1", "sub/2.png,b,P2", "sub/3.png,b,P3", ",a,P9", "sub/notes.txt,a,P4"]
    index = import_dataset(_csv(tmp_path / "l.csv", "\n".join(lines)))
    assert [s.path for s in index.samples] == ["sub/0.png", "sub/1.png", "sub/2.png", "sub/3.png"]
    assert index.samples[0].group == index.samples[1].group != index.samples[2].group
    assert {s.path: s.reason for s in index.skipped} == {
        "(line 5)": "line 5: no file path", "sub/notes.txt": "not an image file type"}


def test_tsv_with_group_column_keeps_patients_together(tmp_path):
    lines = ["path\tlabel\tpatient_id"]
    for cls in ("benign", "malign"):
        for patient in range(8):
            for k in range(3):
                rel = f"{cls}/p{patient}_{k}.png"
                _img(tmp_path / rel)
                lines.append(f"{rel}\t{cls}\t{cls}-P{patient}")
    index = import_dataset(_csv(tmp_path / "set.tsv", "\n".join(lines)), SplitConfig(seed=1))
    splits_of = {}
    for s in index.samples:
        splits_of.setdefault(s.group, set()).add(s.split)
    assert len(splits_of) == 16 and all(len(v) == 1 for v in splits_of.values())
    assert all(s.group and "P" not in s.group for s in index.samples)  # hashed, not the raw id
    for counts in index.counts().values():
        assert counts["val"] >= 3 and counts["test"] >= 3


def test_group_split_keeps_a_patient_in_each_holdout(tmp_path):
    lines = ["path,label,patient"]
    for patient, n in (("P1", 10), ("P2", 8), ("P3", 2)):
        for k in range(n):
            _img(tmp_path / f"c/{patient}_{k}.png")
            lines.append(f"c/{patient}_{k}.png,c,{patient}")
    for k in range(10):
        _img(tmp_path / f"d/{k}.png")
        lines.append(f"d/{k}.png,d,")
    index = import_dataset(_csv(tmp_path / "l.csv", "\n".join(lines)))
    c = index.counts()["c"]
    assert c["train"] and c["val"] and c["test"]
    by_group = {}
    for s in index.samples:
        if s.group:
            by_group.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in by_group.values())


def test_every_class_keeps_training_images_when_patients_span_classes(tmp_path):
    lines = ["path,label,patient"]
    for patient in ("P1", "P2", "P3"):
        _img(tmp_path / f"rare/{patient}.png")
        lines.append(f"rare/{patient}.png,rare,{patient}")
        for k in range(30):
            _img(tmp_path / f"common/{patient}_{k}.png")
            lines.append(f"common/{patient}_{k}.png,common,{patient}")
    for k in range(70):
        _img(tmp_path / f"common/solo{k}.png")
        lines.append(f"common/solo{k}.png,common,")
    index = import_dataset(_csv(tmp_path / "l.csv", "\n".join(lines)), SplitConfig(val_fraction=0.4, test_fraction=0.4))
    assert all(counts["train"] >= 1 for counts in index.counts().values())


def test_single_patient_class_stays_in_training_with_warning(tmp_path):
    lines = ["path,label,group"]
    for k in range(12):
        _img(tmp_path / f"x/{k}.png")
        lines.append(f"x/{k}.png,x,patient-{k}")
        _img(tmp_path / f"y/{k}.png")
        lines.append(f"y/{k}.png,y,the-only-one")
    index = import_dataset(_csv(tmp_path / "l.csv", "\n".join(lines)))
    assert index.counts()["y"] == {"train": 12, "val": 0, "test": 0}
    assert any("'y': all its images come from one patient/group" in w for w in index.warnings)
    assert index.counts()["x"]["val"] > 0


def test_csv_whose_paths_do_not_exist(tmp_path):
    text = "path,label\n" + "\n".join(f"nowhere/{i}.png,{'ab'[i % 2]}" for i in range(7))
    with pytest.raises(UserError) as info:
        import_dataset(_csv(tmp_path / "bad.csv", text))
    message = str(info.value)
    assert "None of the 7 files listed in bad.csv exist" in message
    assert "nowhere/0.png, nowhere/1.png" in message and "relative to the folder" in message


# --- DICOM ----------------------------------------------------------------------------------


def _dicom_copy(sample: str, path: Path, patient: str, n: int) -> None:
    ds = pydicom.dcmread(get_testdata_file(sample))
    ds.PatientID = patient
    ds.InstanceNumber = n  # different bytes for every copy
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)


def test_dicom_folder_groups_by_patient_id(tmp_path):
    root = tmp_path / "dicom"
    for i in range(12):
        _dicom_copy("CT_small.dcm", root / "ct" / f"{i}.dcm", f"SECRET-CT-{i // 3}", i)
        _dicom_copy("MR_small.dcm", root / "mr" / f"IM{i:04d}", f"SECRET-MR-{i // 3}", i)  # no extension
    index = import_dataset(root, SplitConfig(seed=2))
    assert len(index.samples) == 24 and not index.skipped
    splits_of = {}
    for s in index.samples:
        splits_of.setdefault(s.group, set()).add(s.split)
    assert len(splits_of) == 8 and all(len(v) == 1 for v in splits_of.values())
    text = json.dumps(index.to_report()) + json.dumps(index.to_json("../dicom")) + format_report(index)
    assert "SECRET" not in text and str(tmp_path) not in text


# --- errors ---------------------------------------------------------------------------------


def test_missing_source(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        import_dataset(tmp_path / "nope")


def test_source_of_the_wrong_kind(tmp_path):
    (tmp_path / "list.txt").write_text("a.png,x")
    with pytest.raises(UserError, match="neither a folder nor a .csv/.tsv file"):
        import_dataset(tmp_path / "list.txt")


def test_empty_csv(tmp_path):
    with pytest.raises(UserError, match="l.csv is empty"):
        import_dataset(_csv(tmp_path / "l.csv", "\n\n"))


def test_no_images_says_where_and_what_layout(tmp_path):
    root = tmp_path / "empty"
    (root / "a").mkdir(parents=True)
    (root / "a" / "notes.txt").write_text("x")
    with pytest.raises(UserError) as info:
        import_dataset(root)
    assert str(root) in info.value.what and "a/notes.txt: not an image file type" in info.value.what
    assert "one subfolder per class" in info.value.hint


def test_only_one_class(tmp_path):
    with pytest.raises(UserError, match="Only one class found .*'solo'"):
        import_dataset(_class_folders(tmp_path / "d", {"solo": 5}))


def test_class_with_too_few_usable_images(tmp_path):
    root = _class_folders(tmp_path / "d", {"big": 5, "tiny": 1})
    (root / "tiny" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UserError, match=r"fewer than 2 usable images: 'tiny' \(1\)"):
        import_dataset(root)


def test_all_files_unusable(tmp_path):
    root = tmp_path / "d"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "x.jpg").touch()
    with pytest.raises(UserError, match="all 2 files were skipped .*empty file"):
        import_dataset(root)


def test_cancel(tmp_path):
    root = _class_folders(tmp_path / "d", {"a": 5, "b": 5})
    asked = itertools.count()
    with pytest.raises(Cancelled):
        import_dataset(root, should_stop=lambda: next(asked) >= 3)


# --- reports and stored indexes -------------------------------------------------------------


def test_report_and_text_have_no_absolute_paths(tmp_path):
    root = _class_folders(tmp_path / "data", {"a": 15, "b": 3})
    (root / "a" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    index = import_dataset(root)
    report = index.to_report()
    assert [c["name"] for c in report["classes"]] == ["a", "b"]
    assert report["totals"]["total"] == 18 and report["skipped"][0]["path"] == "a/bad.jpg"
    assert any("imbalanced" in w for w in report["warnings"])
    assert any("Few images in 'b' (3)" in w for w in report["warnings"])
    text = format_report(index)
    assert "a/bad.jpg" in text and "Warnings:" in text
    assert str(tmp_path) not in json.dumps(report) and str(tmp_path) not in text


def test_json_round_trip_with_relative_source(tmp_path):
    root = _class_folders(tmp_path / "data", {"a": 6, "b": 6})
    (root / "b" / "junk.txt").write_text("x")
    index = import_dataset(root)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    data = json.loads(json.dumps(index.to_json("../../data")))
    assert str(tmp_path) not in json.dumps(data) and "group" not in json.dumps(data)
    back = DatasetIndex.from_json(data, run_dir)
    assert back.root == root and back.source == root
    assert back.classes == index.classes and back.skipped == index.skipped
    assert back.samples == [Sample(s.path, s.label, s.split, s.sha256) for s in index.samples]


def test_json_round_trip_of_a_csv_source(tmp_path):
    for i in range(4):
        _img(tmp_path / "imgs" / f"{i}.png")
    csv_path = _csv(tmp_path / "l.csv", "\n".join(f"imgs/{i}.png,{'xy'[i % 2]}" for i in range(4)))
    back = DatasetIndex.from_json(import_dataset(csv_path).to_json("l.csv"), tmp_path)
    assert back.source == csv_path and back.root == tmp_path and len(back.samples) == 4


def test_to_json_refuses_an_absolute_source(tmp_path):
    index = import_dataset(_class_folders(tmp_path / "data", {"a": 2, "b": 2}))
    with pytest.raises(ValueError):
        index.to_json(str(tmp_path / "data"))


def test_from_json_when_data_folder_is_gone(tmp_path):
    data = import_dataset(_class_folders(tmp_path / "data", {"a": 2, "b": 2})).to_json("../moved")
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="data folder of this run is gone"):
        DatasetIndex.from_json(data, tmp_path / "run")


@pytest.mark.parametrize("change", [
    lambda d: d.pop("source"),
    lambda d: d.update(source_kind="zip"),
    lambda d: d.update(classes="a,b"),
    lambda d: d.update(samples=None),
    lambda d: d["samples"][0].update(label="0"),
    lambda d: d["samples"][0].update(label=True),
    lambda d: d["samples"][0].update(label=7),
    lambda d: d["samples"][0].update(split="holdout"),
    lambda d: d["samples"][0].update(path="/etc/passwd"),
    lambda d: d["samples"].append(["x", 0]),
    lambda d: d.update(skipped=[{"path": 3}]),
])
def test_from_json_rejects_hand_edited_files(tmp_path, change):
    data = import_dataset(_class_folders(tmp_path / "data", {"a": 2, "b": 2})).to_json("data")
    change(data)
    with pytest.raises(UserError, match="damaged"):
        DatasetIndex.from_json(data, tmp_path)


def test_a_table_with_several_labels_per_image_is_named_so(tmp_path):
    pictures = [_img(tmp_path / "imgs" / f"{i}.png") for i in range(8)]
    labels = ["brick", "grass", "brick;grass", "grass;brick", "brick", "grass", "brick;grass", "grass;brick"]
    few = _csv(tmp_path / "few.csv", "path,label\n" + "".join(
        f"imgs/{p.name},\"{label}\"\n" for p, label in zip(pictures[:6], labels[:6], strict=True)))
    with pytest.raises(UserError, match="gives several labels per image, joined with ';'"):
        import_dataset(few)                                      # combinations of one image each
    joined = _csv(tmp_path / "joined.csv", "path,label\n" + "".join(
        f"imgs/{p.name},\"{label}\"\n" for p, label in zip(pictures, labels, strict=True)))
    index = import_dataset(joined)
    assert len(index.classes) == 4 and not index.multi_label
    sets = _csv(tmp_path / "sets.csv", "path,labels\n" + "".join(     # the multi-label form of the same table
        f"imgs/{p.name},\"{label}\"\n" for p, label in zip(pictures, labels, strict=True)))
    assert import_dataset(sets).classes == ["brick", "grass"] and import_dataset(sets).multi_label
    warning = next(w for w in index.warnings if "joined with ';'" in w)
    assert "(such as 'brick;grass')" in warning and "(4 classes)" in warning
    wide = _csv(tmp_path / "wide.csv", "path,label,brick,grass,site\n" + "".join(
        f"imgs/{p.name},{label.split(';')[0]},{int('brick' in label)},{int('grass' in label)},A\n"
        for p, label in zip(pictures, labels, strict=True)))
    found = import_dataset(wide).warnings
    assert any(w.startswith("Columns brick, grass of wide.csv hold only 0 and 1") for w in found)
    assert not any("joined with" in w or "only 0 and 1" in w for w in import_dataset(
        _csv(tmp_path / "plain.csv", "path,label\n" + "".join(f"imgs/{p.name},x{i % 2}\n"
                                                              for i, p in enumerate(pictures)))).warnings)
