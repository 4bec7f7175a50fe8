"""No patient identity leaves the DICOM files: train, evaluate, export and predict on DICOMs whose
PatientName/PatientID carry a sentinel, inside a folder whose name carries it too, then search the
bytes of every file written (run folder, ONNX, CSV, project file, app caches, a silent trial's watch log) and
the CLI's output (the monitor's report included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from desktop_tl.core.runs.folder import DETECTOR_FILE
from desktop_tl.core.training.tuning import TUNING_FILE

from rel_support import REPO, dicom_copy, files_under

SENTINEL = "SENTINEL"
PATIENT_NAME = "SENTINEL^PATIENT"


def test_no_patient_identity_or_absolute_path_is_written_or_printed(tmp_path):
    study = tmp_path / f"{PATIENT_NAME} study"  # the sentinel sits above the dataset root
    data = study / "data"
    for i in range(24):       # enough that the automatic run fits the check for unfamiliar images
        dicom_copy(data / "ct" / f"ct_{i}.dcm", "CT_small.dcm", PATIENT_NAME, f"{SENTINEL}-123-{i % 6}", i + 1)
        dicom_copy(data / "mr" / f"mr_{i}.dcm", "MR_small.dcm", PATIENT_NAME, f"{SENTINEL}-456-{i % 6}", i + 1)
    dicom_copy(study / "unlabelled" / "ct_u.dcm", "CT_small.dcm", PATIENT_NAME, f"{SENTINEL}-789", 20)
    dicom_copy(study / "unlabelled" / "mr_u.dcm", "MR_small.dcm", PATIENT_NAME, f"{SENTINEL}-789", 21)
    (study / "multi.csv").write_text("path,labels\n" + "".join(     # a multi-label table of the same scans
        f"data/{kind}/{kind}_{i}.dcm,{kind}{';early' if i < 12 else ''}\n" for kind in ("ct", "mr") for i in range(24)))
    user = tmp_path / "user"
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from desktop_tl.cli import main
        for argv in (["import-check", "data"], ["import-check", "data", "--json"],
                     ["train", "data", "--out", "runs/auto", "--budget", "20s", "--workers", "0"],
                     ["evaluate", "runs/auto", "--json"], ["evaluate", "runs/auto", "--by", "Modality"],
                     ["evaluate", "runs/auto", "--target-sensitivity", "0.9"], ["export", "runs/auto"],
                     ["report", "runs/auto"], ["report", "runs/auto", "--out", "runs/auto-report.html"],
                     ["predict", "runs/auto/model.onnx", "data", "--csv", "runs/pred.csv"],
                     ["predict", "runs/auto/model.onnx", "data", "--heatmaps", "runs/heatmaps"],
                     ["predict", "runs/auto/model.onnx", "data", "--json"],
                     ["review-labels", "runs/auto"], ["suggest", "runs/auto", "data", "--out", "runs/suggest.csv"],
                     ["watch", "runs/auto/model.onnx", "data", "--log", "runs/trial.jsonl", "--once",
                      "--settle", "0.2"],
                     ["monitor", "runs/trial.jsonl", "--truth", "runs/truth.csv"],
                     ["monitor", "runs/trial.jsonl", "--truth", "runs/truth.csv", "--json"],
                     ["monitor", "runs/trial.jsonl", "--verify"],
                     ["report", "runs/auto", "--out", "runs/trial-report.html", "--trial", "runs/trial.jsonl",
                      "--truth", "runs/truth.csv"],
                     ["import-check", "multi.csv", "--json"],       # several labels per image
                     ["train", "multi.csv", "--out", "runs/multi", "--budget", "10s", "--workers", "0",
                      "--image-size", "64"],
                     ["evaluate", "runs/multi", "--json"], ["export", "runs/multi"],
                     ["predict", "runs/multi/model.onnx", "data", "--csv", "runs/multi-pred.csv", "--heatmaps",
                      "runs/multi-heatmaps"], ["predict", "runs/multi/model.onnx", "data", "--json"]):
            if argv[0] == "monitor" and not Path("runs/truth.csv").exists():     # the true labels of a trial
                scans = sorted(Path("data").rglob("*.dcm"))
                Path("runs/truth.csv").write_text("path,label\\n" + "".join(
                    f"{p.relative_to('data').as_posix()},{p.parent.name}\\n" for p in scans))
            print("$", *argv, flush=True)
            code = main(argv)
            print("exit", code, flush=True)
            if code:
                sys.exit(code)
        from desktop_tl.core.config import SplitConfig
        from desktop_tl.core.data.confirmed import save_confirmed, with_confirmed
        from desktop_tl.core.data.importer import import_dataset
        from desktop_tl.core.project import Project, save_project
        from desktop_tl.core.runs.folder import create_run
        from desktop_tl.core.runs.retrain import retrain_config
        # label assist in the window: confirmed labels, then Retrain (a new run from the run's best checkpoint)
        save_confirmed(Path("runs/confirmed_labels.csv"), {"../unlabelled/ct_u.dcm": "ct", "../unlabelled/mr_u.dcm": "mr"})
        joined = with_confirmed(import_dataset(Path("data")), Path("runs/confirmed_labels.csv"))
        create_run(Path("runs/retrain"), joined, retrain_config(Path("runs/auto")).config, SplitConfig())
        save_project(Path("study.dtlproj"), Project(data_source=Path("data"), runs=[Path("runs/auto"), Path("runs/retrain")],
                                                    current_run=Path("runs/auto"),
                                                    labels_csv=Path("runs/confirmed_labels.csv")))
    """)
    known_speeds = Path(os.environ["DESKTOP_TL_CACHE_DIR"]) / TUNING_FILE    # measured by earlier tests (conftest)
    if known_speeds.is_file():
        (user / "cache").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(known_speeds, user / "cache" / TUNING_FILE)
    env = dict(os.environ, PYTHONPATH=str(REPO), DESKTOP_TL_DATA_DIR=str(user / "data"),
               DESKTOP_TL_CACHE_DIR=str(user / "cache"), PYTHONWARNINGS="default")
    done = subprocess.run([sys.executable, "-c", script], cwd=study, env=env, capture_output=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log.decode(errors="replace")[-4000:]
    assert (study / "runs" / "auto" / "model.onnx").is_file() and (study / "runs" / "pred.csv").is_file()
    auto = (study / "runs" / "auto" / "run.json").read_text()
    assert '"plan"' in auto and '"decision"' in auto            # the automatic recipe's own outputs are searched too
    assert "<h2>Figures" in (study / "runs" / "auto" / "report.html").read_text()      # and the reports,
    assert (study / "runs" / "auto-report.html").is_file()
    assert (study / "runs" / "auto" / "label_review.json").is_file() and (study / "runs" / "suggest.csv").is_file()
    assert (study / "runs" / "auto" / DETECTOR_FILE).is_file()                       # the unfamiliarity check,
    assert len(list((study / "runs" / "heatmaps").glob("*.png"))) == 48             # heat maps, label review, assist
    assert "Epoch 1/" in (study / "runs" / "auto" / "log.txt").read_text()           # and the run's log
    assert "../unlabelled/ct_u.dcm" in (study / "runs" / "retrain" / "dataset.json").read_text()   # and Retrain
    trial = (study / "runs" / "trial.jsonl").read_text()                   # and a silent trial's log and report
    assert trial.count('"kind":"image"') == 48 and b"Against the true labels: 48 cases matched" in done.stdout
    assert "<h2>Silent trial</h2>" in (study / "runs" / "trial-report.html").read_text()
    assert '"task": "multi_label"' in (study / "runs" / "multi" / "metrics.json").read_text()   # and a multi-label
    assert (study / "runs" / "multi-pred.csv").read_text().startswith("path,labels,status,")    # run's outputs

    assert SENTINEL.encode() in (data / "ct" / "ct_0.dcm").read_bytes()  # the search below can find it
    needles = {SENTINEL.encode(), str(study).encode(), str(data).encode(), str(tmp_path).encode(),
               "SENTINEL".encode("utf-16-le")}
    written = files_under(study / "runs") + list(study.glob("*.dtlproj")) + files_under(user)
    assert len(written) >= 8, written
    leaks = [f"{path.relative_to(tmp_path)} contains {needle!r}" for path in written
             for needle in needles if needle in path.read_bytes()]
    leaks += [f"CLI output contains {needle!r}" for needle in needles if needle in log]
    assert not leaks, "\n".join(leaks) + "\n" + log.decode(errors="replace")[-3000:]
