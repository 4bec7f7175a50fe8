"""`desktop-tl watch`: files dropped into a folder are logged once each, a half-written file is not read early,
a watcher killed with SIGKILL and restarted loses and doubles nothing, and the log's chain holds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from desktop_tl.core.audit_log import read_entries, verify_log
from desktop_tl.core.deploy.watch import FolderWatch
from desktop_tl.core.hashing import file_sha256

from helpers import DEMO_IMAGES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def model(exported_model) -> Path:
    """The shared run's model, exported (tests/conftest.py)."""
    return exported_model


def _demo(n: int) -> list[Path]:
    return sorted(DEMO_IMAGES.rglob("*.jpg"))[:n]


def _images(log: Path) -> list[dict]:
    return [e for e in read_entries(log) if e["kind"] == "image"]


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_files_dropped_into_the_folder_are_logged_once_each(model, tmp_path):
    folder, log = tmp_path / "incoming", tmp_path / "trial.jsonl"
    (folder / "day1").mkdir(parents=True)
    first, later = _demo(3), _demo(6)[3:]
    for image in first:
        shutil.copy(image, folder / "day1" / image.name)
    stop = threading.Event()
    watch = FolderWatch(model, folder, log, settle_s=0.3)
    thread = threading.Thread(target=watch.run, args=(stop.is_set,))
    thread.start()
    try:
        _wait_for(lambda: len(_images(log)) == 3)
        for image in later:                                     # arriving while it watches
            shutil.copy(image, folder / image.name)
        (folder / ".hidden.jpg").write_bytes(first[0].read_bytes())
        (folder / "notes.txt").write_text("not an image")
        _wait_for(lambda: len(_images(log)) == 6)
        time.sleep(1.0)                                         # nothing else is logged
    finally:
        stop.set()
        thread.join(timeout=30)
    images = _images(log)
    assert sorted(e["path"] for e in images) == sorted([f"day1/{p.name}" for p in first] + [p.name for p in later])
    assert all(e["input_sha256"] == file_sha256(folder / e["path"]) and e["model_sha256"] == file_sha256(model)
               for e in images)
    assert all(e["status"] == "answered" and abs(sum(e["probabilities"].values()) - 1) < 1e-4 for e in images)
    kinds = [e["kind"] for e in read_entries(log)]
    assert kinds[0] == "start" and kinds[-1] == "stop" and verify_log(log).ok
    assert str(tmp_path) not in log.read_text()                # relative paths only
    assert sorted(p.name for p in folder.rglob("*")) == sorted(["day1", ".hidden.jpg", "notes.txt"]
                                                             + [p.name for p in first + later])   # nothing moved

    again = FolderWatch(model, folder, log, settle_s=0.1).run(lambda: False, once=True)     # a restart
    assert again.logged == 0 and again.known == 6 and len(_images(log)) == 6 and verify_log(log).ok


def test_a_half_written_file_is_not_read_early(model, tmp_path):
    folder, log = tmp_path / "incoming", tmp_path / "trial.jsonl"
    folder.mkdir()
    payload = _demo(1)[0].read_bytes()
    stop = threading.Event()
    thread = threading.Thread(target=FolderWatch(model, folder, log, settle_s=0.8).run, args=(stop.is_set,))
    thread.start()
    try:
        target = folder / "scan.jpg"
        with open(target, "wb") as handle:                      # a slow copy: a chunk every 0.3 s
            for start in range(0, len(payload), len(payload) // 6 + 1):
                handle.write(payload[start:start + len(payload) // 6 + 1])
                handle.flush()
                time.sleep(0.3)
        _wait_for(lambda: len(_images(log)) == 1)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(timeout=30)
    entries = [e for e in read_entries(log) if e["kind"] in ("image", "skipped")]
    assert len(entries) == 1 and entries[0]["kind"] == "image"
    assert entries[0]["input_sha256"] == file_sha256(target)     # the whole file, read once


def test_an_unreadable_file_is_logged_as_skipped_with_the_reason(model, tmp_path):
    folder, log = tmp_path / "incoming", tmp_path / "trial.jsonl"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    shutil.copy(_demo(1)[0], folder / "fine.jpg")
    counts = FolderWatch(model, folder, log, settle_s=0.1).run(lambda: False, once=True)
    assert counts.logged == 1 and counts.skipped == 1
    skipped = next(e for e in read_entries(log) if e["kind"] == "skipped")
    assert skipped["path"] == "broken.png" and skipped["reason"] and str(tmp_path) not in skipped["reason"]


def test_a_watcher_killed_with_sigkill_and_restarted_loses_and_doubles_nothing(model, tmp_path):
    folder, log = tmp_path / "incoming", tmp_path / "trial.jsonl"
    folder.mkdir()
    images = _demo(40)
    command = [sys.executable, "-m", "desktop_tl", "watch", str(model), str(folder), "--log", str(log),
               "--settle", "0.2", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    watcher = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for image in images[:20]:
            shutil.copy(image, folder / image.name)
        _wait_for(lambda: len(_images(log)) >= 5, timeout=120)
        for image in images[20:]:                               # copied across the kill
            shutil.copy(image, folder / image.name)
        watcher.send_signal(signal.SIGKILL)
        watcher.wait(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    before = len(_images(log))
    assert 5 <= before <= 40
    with open(log, "ab") as handle:                             # as if killed in the middle of a line
        handle.write(b'{"kind":"image","path":"torn')
    done = subprocess.run(command + ["--once"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Repaired trial.jsonl" in done.stdout
    logged = _images(log)
    assert sorted(e["path"] for e in logged) == sorted(p.name for p in images)     # all 40, none twice
    repair = next(e for e in read_entries(log) if e["kind"] == "repair")
    assert repair["torn_bytes"] == len(b'{"kind":"image","path":"torn')
    assert verify_log(log).ok and str(tmp_path) not in log.read_text()


def test_sigterm_stops_the_watch_cleanly(model, tmp_path):
    folder, log = tmp_path / "incoming", tmp_path / "trial.jsonl"
    folder.mkdir()
    shutil.copy(_demo(1)[0], folder / "one.jpg")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    watcher = subprocess.Popen([sys.executable, "-m", "desktop_tl", "watch", str(model), str(folder), "--log",
                                str(log), "--settle", "0.2"], env=env, stdout=subprocess.PIPE, text=True)
    _wait_for(lambda: len(_images(log)) == 1, timeout=120)
    watcher.send_signal(signal.SIGTERM)
    out, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 0 and "Stopped: 1 image logged" in out
    assert read_entries(log)[-1]["kind"] == "stop" and json.loads(log.read_text().splitlines()[-1])["logged"] == 1


def test_the_log_carries_what_the_model_promised_on_its_test_split(model, trained_run, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(_demo(1)[0], folder / "one.jpg")
    FolderWatch(model, folder, tmp_path / "trial.jsonl", settle_s=0.1).run(lambda: False, once=True)
    start = read_entries(tmp_path / "trial.jsonl")[0]
    promised, metrics = start["held_out_counts"], json.loads((trained_run / "metrics.json").read_text())
    test = metrics["test"]
    assert promised["split"] == "test" and promised["images"] == test["images"]
    assert promised["correct"] == round(test["accuracy"] * test["images"])
    assert sum(of for _found, of in promised["per_class"].values()) == test["images"]
    assert start["classes"] == metrics["classes"] and "Decision" in start["rules"]


def test_the_run_report_gets_the_trial_section(model, trained_run, tmp_path, capsys):
    from desktop_tl.cli import main

    folder = tmp_path / "incoming"
    folder.mkdir()
    images = _demo(3)
    for image in images:
        shutil.copy(image, folder / image.name)
    FolderWatch(model, folder, tmp_path / "trial.jsonl", settle_s=0.1).run(lambda: False, once=True)
    truth = tmp_path / "truth.csv"
    truth.write_text("path,label\n" + "".join(f"{p.name},{p.parent.name}\n" for p in images))
    out = tmp_path / "report.html"
    assert main(["report", str(trained_run), "--out", str(out), "--trial", str(tmp_path / "trial.jsonl"),
                 "--truth", str(truth)]) == 0
    page = out.read_text()
    assert "<h2>Silent trial</h2>" in page and "hash chain is intact" in page and "3 cases have a true label" in page
    assert "Promised (test split)" in page and str(tmp_path) not in page
    assert main(["report", str(trained_run), "--out", str(out), "--truth", str(truth)]) == 2
    assert "--truth goes with --trial" in capsys.readouterr().err
