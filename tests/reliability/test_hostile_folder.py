"""One folder holding every kind of bad file next to good photographs: import lists each bad file
with a reason, training uses exactly the good ones, and nothing crashes or hangs."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from desktop_tl.cli import main
from desktop_tl.core.deploy.predict import collect_inputs
from desktop_tl.core.runs.folder import DATASET_FILE, load_index

from rel_support import (
    FAST,
    copy_demo,
    demo_as,
    demo_image,
    dicom_undecodable,
    dicom_without_pixels,
    exif_rotated_jpeg,
    multipage_tiff,
    palette_png_with_transparency,
    png_bomb,
    sixteen_bit_tiff,
    truncated_copy,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _build_hostile_folder(root):
    """Returns (good relative paths, {bad relative path: expected reason fragment})."""
    good = [p.relative_to(root).as_posix() for p in copy_demo(root, 4)]
    odd_but_good = {
        "brick/cmyk photo.jpg": lambda p: demo_as("brick", 10, p, "CMYK", quality=92),
        "brick/deep 16-bit.tif": lambda p: sixteen_bit_tiff("brick", 11, p),
        "coins/three pages.tiff": lambda p: multipage_tiff("coins", 10, p),
        "coins/palette with transparency.png": lambda p: palette_png_with_transparency("coins", 11, p),
        "grass/exif rotated.jpg": lambda p: exif_rotated_jpeg("grass", 10, p),
        "grass/café ñandú 🐦 Ärzte/résumé 😀 scan 1.png": lambda p: demo_as("grass", 11, p),
        "/".join(["grass"] + ["deep folder " + "x" * 190] * 5 + ["y" * 200 + ".png"]):
            lambda p: demo_as("grass", 12, p),
    }
    for rel, make in odd_but_good.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        make(root / rel)
        good.append(rel)
    assert max(len(str(root / rel)) for rel in good) > 1000  # the long path really is long

    rng = np.random.default_rng(5)
    bad = {}

    def put(rel, content, reason):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(root / rel)
        else:
            (root / rel).write_bytes(content)
        bad[rel] = reason

    put("brick/empty.jpg", b"", "empty file (0 bytes)")
    put("brick/half.jpg", lambda p: truncated_copy(demo_image("brick", 12), p), "truncated or corrupt JPEG")
    put("coins/half.png", lambda p: truncated_copy(demo_as("coins", 12, p.with_name("tmp.png")), p),
        "truncated or corrupt PNG")
    (root / "coins" / "tmp.png").unlink()
    put("coins/notes.png", b"Patient list, do not share\nline two\n", "not an image (the file holds text)")
    put("grass/page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "web page, HTML")
    put("grass/noise.jpg", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), "unrecognised file content")
    put("brick/bomb.png", lambda p: png_bomb(p, 20000), "image too large (400,000,000 pixels; images over")
    put("brick/no pixels.dcm", dicom_without_pixels, "DICOM file has no pixel data")
    put("coins/jpeg2000 raw.dcm", dicom_undecodable, "cannot be decoded")
    put("grass/not dicom.dcm", b"this is not DICOM at all " * 40, "not a DICOM file")
    put("grass/readme.txt", b"notes", "not an image file type")
    put("stray.jpg", demo_image("brick", 13).read_bytes(), "not inside a class folder")
    os.mkfifo(root / "coins" / "pipe.png")  # reading it would block forever
    bad["coins/pipe.png"] = "not a regular file"
    os.mkfifo(root / "coins" / "pipe")
    bad["coins/pipe"] = "not a regular file"
    os.symlink(root / "nowhere.jpg", root / "grass" / "broken link.jpg")
    bad["grass/broken link.jpg"] = "not a regular file"
    os.symlink("..", root / "brick" / "loop to root")  # loops are ignored, not followed forever
    os.symlink(".", root / "coins" / "loop to self")
    return good, bad


def _write_csv(root, good):
    """labels.csv with a BOM, ';' as delimiter, a missing file, a repeated row, an empty label and a bad file."""
    rows = [f"{rel};{rel.split('/')[0]}" for rel in good[:12]]
    rows += [rows[0], "brick/gone.jpg;brick", "coins/half.png;coins", f"{good[3]};", ""]
    path = root / "labels.csv"
    path.write_bytes(("file;label\n" + "\n".join(rows) + "\n").encode("utf-8-sig"))
    return path


def test_hostile_folder_import_and_train(tmp_path, capsys):
    root = tmp_path / "hostile data"
    good, bad = _build_hostile_folder(root)

    assert main(["import-check", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    for rel, reason in bad.items():
        assert rel in skipped, f"{rel} not reported as skipped"
        assert reason in skipped[rel], (rel, skipped[rel])
    assert not set(good) & set(skipped), "a good file was skipped"
    assert report["totals"]["total"] == len(good)

    assert main(["import-check", str(root)]) == 0  # the plain-text report copes with every name
    text = capsys.readouterr().out
    assert f"{len(good)} usable images" in text and "Skipped files" in text

    run = tmp_path / "run"
    assert main(["train", str(root), "--out", str(run), *FAST]) == 0
    out = capsys.readouterr().out
    stored = json.loads((run / DATASET_FILE).read_text(encoding="utf-8"))
    assert sorted(s["path"] for s in stored["samples"]) == sorted(good)  # only the good files train
    index = load_index(run)
    trained = len(index.split("train"))
    assert f"Training {trained} images (validation {len(index.split('val'))})" in out
    assert "test (" in out and "Saved in" in out

    # predict's folder walk skips the pipes instead of blocking on them (run in a thread: a hang must fail, not stall).
    found = []
    walker = threading.Thread(target=lambda: found.extend(collect_inputs([root])), daemon=True)
    walker.start()
    walker.join(30)
    assert not walker.is_alive(), "collect_inputs blocked on a pipe"
    shown = {Path(path).relative_to(root).as_posix() for path, _ in found}
    assert set(good) <= shown and "coins/pipe" not in shown

    # The same folder listed by a hostile CSV (BOM, ';', missing file, repeated row, empty label).
    csv_path = _write_csv(root, good)
    assert main(["import-check", str(csv_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert "file not found" in reasons["brick/gone.jpg"]
    assert "truncated or corrupt PNG" in reasons["coins/half.png"]
    assert any("empty label" in r for r in reasons.values())
    assert any("repeated lines" in w for w in report["warnings"])
    assert report["totals"]["total"] == 12


def test_dataset_empty_after_skipping_exits_2(tmp_path, capsys):
    root = tmp_path / "all bad"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        (root / cls / "empty.png").write_bytes(b"")
        (root / cls / "text.jpg").write_bytes(b"hello")
        truncated_copy(demo_image("brick", 0), root / cls / "half.jpg")
    run = tmp_path / "run"
    for argv in (["import-check", str(root)], ["train", str(root), "--out", str(run), *FAST]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "None of the images" in err and "could be used" in err and "What to do" in err
        assert "Traceback" not in err
    assert not (run / "run.json").exists()

    # One class left with a single usable image is refused the same way.
    copy_demo(root, 3, ("brick",))
    (root / "a" / "ok.jpg").write_bytes(demo_image("coins", 0).read_bytes())
    assert main(["train", str(root), "--out", str(run), *FAST]) == 2
    assert "fewer than 2 usable images" in capsys.readouterr().err
