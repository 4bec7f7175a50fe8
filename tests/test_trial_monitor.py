"""The watch log's hash chain (`monitor --verify` catches an edited, a deleted and a swapped line; a torn last line
is repaired with a note) and `monitor`'s figures (counts, drift alarm, realised figures against the promise)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from desktop_tl.cli import main
from desktop_tl.core.audit_log import AuditLog, read_entries, verify_log
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.intervals import wilson_interval
from desktop_tl.core.evaluation.trial import monitor_report, monitor_text

CLASSES = ["benign", "malignant"]
PROMISE = {"split": "test", "images": 100, "correct": 90, "positive": "malignant",
           "per_class": {"benign": [54, 60], "malignant": [36, 40]}, "tp": 36, "fn": 4, "fp": 6, "tn": 54}


PERCENTILES = [float(k) for k in range(5, 100, 5)]      # held-out scores spread evenly over 0-100


def _trial(path: Path, cases: list[tuple[str, str, str]], flagged_share: float = 0.05,
           scores: list[float] | None = None) -> Path:
    """A log as `watch` writes it: a start entry, then one image entry per (path, label, status), with its
    unfamiliarity score when `scores` are given."""
    with AuditLog.open(path) as log:
        log.append({"kind": "start", "time": "2026-11-02T08:00:00.000Z", "model": "model.onnx",
                    "model_sha256": "ab" * 32, "folder": "scans", "classes": CLASSES,
                    "decision": {"positive": "malignant", "threshold": 0.3},
                    "familiarity": {"threshold": 95.0, "flagged_share": flagged_share,
                                    "score_percentiles": PERCENTILES},
                    "held_out_counts": PROMISE})
        for number, (name, label, status) in enumerate(cases):
            p = 0.9 if label == "malignant" else 0.1
            log.append({"kind": "image", "time": f"2026-11-{2 + number // 50:02d}T09:00:00.000Z", "path": name,
                        "input_sha256": f"{number:064x}", "model_sha256": "ab" * 32, "label": label,
                        "probability": max(p, 1 - p), "probabilities": {"benign": 1 - p, "malignant": p},
                        "status": status, **({"unfamiliarity": scores[number]} if scores else {})})
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_verify_passes_an_intact_log_and_names_the_first_bad_line_of_a_tampered_one(tmp_path, capsys):
    log = _trial(tmp_path / "trial.jsonl", [(f"s{i}.png", "benign", "answered") for i in range(5)])
    assert verify_log(log).ok and verify_log(log).entries == 6
    assert main(["monitor", str(log), "--verify"]) == 0 and "intact" in capsys.readouterr().out
    lines = _lines(log)

    edited = tmp_path / "edited.jsonl"
    entry = json.loads(lines[3])
    entry["label"] = "malignant"                               # a changed answer
    edited.write_text("".join(lines[:3] + [json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"]
                              + lines[4:]))
    deleted = tmp_path / "deleted.jsonl"
    deleted.write_text("".join(lines[:3] + lines[4:]))
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("".join(lines[:2] + [lines[3], lines[2]] + lines[4:]))
    for tampered, line, why in ((edited, 4, "edited"), (deleted, 4, "removed"),
                                (swapped, 3, "removed, added or moved")):
        found = verify_log(tampered)
        assert not found.ok and found.bad_line == line and why in found.reason, (tampered.name, found)
        assert main(["monitor", str(tampered), "--verify"]) == 1
        assert f"line {line} breaks the hash chain" in capsys.readouterr().out


def test_a_torn_last_line_is_cut_off_and_recorded_never_dropped_silently(tmp_path):
    log = _trial(tmp_path / "trial.jsonl", [("a.png", "benign", "answered")])
    with open(log, "ab") as handle:
        handle.write(b'{"kind":"image","pa')
    assert not verify_log(log).ok
    with AuditLog.open(log) as reopened:
        assert reopened.repaired is not None and reopened.repaired["torn_bytes"] == 19
        reopened.append({"kind": "image", "path": "b.png"})
    assert verify_log(log).ok
    assert [e["kind"] for e in read_entries(log)] == ["start", "image", "repair", "image"]


def test_a_file_that_is_not_a_log_is_refused(tmp_path):
    other = tmp_path / "notes.jsonl"
    other.write_text("hello\nworld\n")
    with pytest.raises(UserError, match="not a desktop_tl watch log"):
        AuditLog.open(other)
    other.write_text('{"path": "a.png", "label": "x"}\n')         # JSON lines, but not a chain
    with pytest.raises(UserError, match="not a desktop_tl watch log"):
        AuditLog.open(other)


def test_monitor_with_the_truth_reproduces_known_figures_and_says_when_practice_falls_short(tmp_path, capsys):
    # 40 malignant cases: 28 called malignant (sensitivity 0.70, below the promised 0.90 [0.77, 0.96]);
    # 60 benign: 57 called benign. 5 of the benign ones were referred (uncertain).
    cases, truth = [], ["path,label"]
    for i in range(40):
        cases.append((f"m{i}.png", "malignant" if i < 28 else "benign", "answered"))
        truth.append(f"m{i}.png,malignant")
    for i in range(60):
        cases.append((f"b{i}.png", "benign" if i < 57 else "malignant", "uncertain" if i < 5 else "answered"))
        truth.append(f"b{i}.png,benign")
    truth.append("never-seen.png,benign")
    cases.append(("x0.png", "benign", "answered"))
    truth.append("x0.png,cyst")                                # a label the model does not know
    log = _trial(tmp_path / "trial.jsonl", cases)
    (tmp_path / "truth.csv").write_text("\n".join(truth) + "\n")

    report = monitor_report(log, tmp_path / "truth.csv")
    realised, promised = report["truth"]["realised"], report["truth"]["promised"]
    assert report["truth"]["matched"] == 100 and report["images"] == 101 and report["chain"]["intact"]
    assert report["truth"]["labels_not_of_the_model"] == {"cyst": 1}
    assert realised["sensitivity"]["hits"] == 28 and realised["sensitivity"]["of"] == 40
    assert realised["sensitivity"]["ci95"] == pytest.approx(list(wilson_interval(28, 40)))
    assert realised["specificity"]["value"] == pytest.approx(57 / 60)
    assert realised["ppv"]["value"] == pytest.approx(28 / 31) and realised["npv"]["value"] == pytest.approx(57 / 69)
    assert realised["accuracy"]["value"] == pytest.approx(85 / 100)
    assert promised["sensitivity"]["value"] == pytest.approx(0.9) and promised["split"] == "test"
    assert report["truth"]["answered"]["coverage"]["hits"] == 95
    shortfalls = report["truth"]["shortfalls"]
    assert any(s.startswith("The sensitivity in practice, 70.0% (28 of 40), is below what the test split promised")
               for s in shortfalls)
    assert not any("specificity in practice" in s for s in shortfalls)      # 0.95 is within the promise
    assert report["windows"][0]["window"] == "2026-11-02" and report["windows"][0]["images"] == 50

    assert main(["monitor", str(log), "--window", "0"]) == 2 and "--window takes" in capsys.readouterr().err
    assert main(["monitor", str(log), "--truth", str(tmp_path / "truth.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["truth"]["realised"]["sensitivity"]["hits"] == 28
    assert main(["monitor", str(log), "--truth", str(tmp_path / "truth.csv")]) == 0
    text = capsys.readouterr().out
    assert "sensitivity\t70.0% (54.6%-81.9%, 28/40)\t90.0% (76.9%-96.0%, 36/40)" in text
    assert "is below what the test split promised" in text
    assert "1 case with a true label the model does not know (cyst): left out of the figures." in text


def test_the_drift_alarm_rings_when_more_images_are_unfamiliar_than_chance_allows(tmp_path):
    quiet = [(f"q{i}.png", "benign", "unfamiliar" if i % 25 == 0 else "answered") for i in range(50)]   # 4%
    shifted = [(f"s{i}.png", "benign", "unfamiliar" if i % 3 == 0 else "answered") for i in range(50)]  # 34%
    report = monitor_report(_trial(tmp_path / "trial.jsonl", quiet + shifted))
    assert [w["drift_alarm"] for w in report["windows"]] == [False, True]
    assert "in 2026-11-03 more were flagged, or the typicality was lower, beyond chance" in monitor_text(report)
    by_images = monitor_report(tmp_path / "trial.jsonl", window=25)["windows"]
    assert [w["drift_alarm"] for w in by_images] == [False, False, True, True]


def test_a_truth_file_without_the_columns_gets_a_clear_message(tmp_path):
    log = _trial(tmp_path / "trial.jsonl", [("a.png", "benign", "answered")])
    (tmp_path / "truth.csv").write_text("file,diagnosis\na.png,benign\n")
    with pytest.raises(UserError, match="needs a header with a label column"):
        monitor_report(log, tmp_path / "truth.csv")


def test_the_typicality_alarm_sees_a_shift_before_images_cross_the_threshold(tmp_path):
    rng = np.random.default_rng(0)
    usual = list(rng.uniform(0, 100, 200))                    # like the held-out scores
    shifted = list(rng.uniform(50, 94, 200))                  # higher, yet none past the threshold (95)
    cases = [(f"c{i}.png", "benign", "answered") for i in range(400)]
    report = monitor_report(_trial(tmp_path / "trial.jsonl", cases, scores=usual + shifted), window=50)
    windows = report["windows"]
    assert [w["statuses"]["unfamiliar"] for w in windows] == [0] * 8            # nothing flagged
    assert [w["typicality"]["alarm"] for w in windows] == [False] * 4 + [True] * 4
    assert all(abs(w["typicality"]["mean"] - 0.5) < 0.12 for w in windows[:4])
    assert windows[0]["typicality"]["lowest_by_chance"] == pytest.approx(
        0.5 - 3.09 * math.sqrt((20 ** 2 - 1) / (12 * 19 ** 2) / 50))
    assert [w["drift_alarm"] for w in windows] == [False] * 4 + [True] * 4
    assert "Typicality" in monitor_text(report)


def test_a_two_class_model_promises_its_test_counts_at_its_operating_point():
    from desktop_tl.core.decision import Decision
    from desktop_tl.core.deploy.promise import held_out_counts

    # test split: 4 malignant (probabilities 0.9, 0.6, 0.35, 0.2), 4 benign (0.1, 0.25, 0.4, 0.7); threshold 0.3
    metrics = {"test": {"scores": {"positive": "malignant", "is_positive": [1, 1, 1, 1, 0, 0, 0, 0],
                                   "probability": [0.9, 0.6, 0.35, 0.2, 0.1, 0.25, 0.4, 0.7]}}}
    counts = held_out_counts(metrics, CLASSES, Decision("malignant", 0.3))
    assert counts == {"split": "test", "images": 8, "correct": 5, "positive": "malignant",
                      "per_class": {"benign": [2, 4], "malignant": [3, 4]}, "tp": 3, "fn": 1, "fp": 2, "tn": 2}
    assert held_out_counts({"test": {}}, CLASSES, None) is None


def test_a_log_that_cannot_be_written_gets_a_clear_message(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file where the log's folder should be")
    with pytest.raises(UserError, match="Cannot write the log trial.jsonl"):
        AuditLog.open(tmp_path / "taken" / "trial.jsonl")
    folder = tmp_path / "incoming"
    folder.mkdir()
    assert main(["watch", str(tmp_path / "missing.onnx"), str(folder), "--log", str(tmp_path / "t.jsonl")]) == 2
    assert "No model file" in capsys.readouterr().err
