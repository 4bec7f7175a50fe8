"""The silent trial's drift alarms on a planted shift: detection delay and false-alarm rate, side by side.

A model is trained with the defaults (`--budget quick`) on the 300 `digits` images of benchmarks/quality_data.py
and exported; its check for unfamiliar images then scores the 1,497 held-out digits (no choice ever saw them) as
they are, and again after a planted change of the kind a new scanner brings: lower contrast on a lighter
background, or a blur, each at graded strengths. Streams are drawn from those scores (seeded, 40 of each kind), cut into windows of 50
images, and each window is judged by `core.evaluation.trial.counts_over_time`, the monitor's own code:
- no shift: 1,000 held-out digits; the share of windows that raise an alarm is the false-alarm rate;
- a shift: 200 held-out digits, then 500 changed ones; the delay is the number of changed images until the end of
  the first window that raises an alarm (none within 500: not detected).
Each statistic is reported alone (the unfamiliar share, the typicality) and together (what the monitor raises).
Run: python benchmarks/bench_drift.py --data /tmp/quality-data
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from common import ROOT, isolated_cache, machine

WINDOW, STREAMS, BEFORE, AFTER, QUIET = 50, 40, 200, 500, 1000
SHIFTS = {     # graded, from a change most images still pass to one that costs accuracy
    "contrast 0.95": lambda im: Image.eval(im, lambda v: int(8 + v * 0.95)),    # a lighter background, less contrast
    "contrast 0.9": lambda im: Image.eval(im, lambda v: int(14 + v * 0.9)),
    "contrast 0.85": lambda im: Image.eval(im, lambda v: int(20 + v * 0.85)),
    "blur 0.3": lambda im: im.filter(ImageFilter.GaussianBlur(0.3)),
    "blur 0.5": lambda im: im.filter(ImageFilter.GaussianBlur(0.5)),
}


def scores(model: Path, folder: Path, shift=None, work: Path | None = None) -> list[dict]:
    """Each held-out image's entry as the watcher would log it (status and unfamiliarity score)."""
    from desktop_tl.core.deploy.predict import OnnxClassifier

    files = sorted(folder.rglob("*.png"))
    if shift is not None:
        for path in files:
            target = work / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as im:
                shift(im.convert("L")).save(target)
        files = sorted(work.rglob("*.png"))
    classifier = OnnxClassifier(model)
    return [{"status": p.status, "unfamiliarity": p.unfamiliarity, "label": p.label, "truth": f.parent.name}
            for f, p in zip(files, classifier.predict_files([(f, f.name) for f in files], batch_size=64),
                            strict=True)]


def judged(stream: list[dict], familiarity, statistic: str) -> list[bool]:
    """Alarm per window of the stream, by one statistic ("share", "typicality") or both ("either")."""
    from desktop_tl.core.evaluation.trial import counts_over_time

    rows = counts_over_time(stream, WINDOW, familiarity)
    share_only = replace(familiarity, score_percentiles=())      # the unfamiliar share alone
    share_rows = counts_over_time(stream, WINDOW, share_only)
    if statistic == "share":
        return [r["drift_alarm"] for r in share_rows]
    if statistic == "typicality":
        return [bool(r["typicality"] and r["typicality"]["alarm"]) for r in rows]
    return [r["drift_alarm"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True, help="the folder benchmarks/quality_data.py wrote")
    args = parser.parse_args()
    base = isolated_cache()
    print(machine())
    run = base / "run"
    env_python = [sys.executable, "-m", "desktop_tl"]
    subprocess.run(env_python + ["train", str(args.data / "digits"), "--out", str(run), "--budget", "quick",
                                 "--workers", "0"], check=True, capture_output=True, cwd=ROOT)
    subprocess.run(env_python + ["export", str(run)], check=True, capture_output=True, cwd=ROOT)
    from desktop_tl.core.deploy.predict import OnnxClassifier

    familiarity = OnnxClassifier(run / "model.onnx").familiarity
    assert familiarity is not None and familiarity.score_percentiles, "the model has no typicality percentiles"
    usual = scores(run / "model.onnx", args.data / "digits_heldout")
    changed = {name: scores(run / "model.onnx", args.data / "digits_heldout", fn, base / name.replace(" ", "_"))
               for name, fn in SHIFTS.items()}
    print(f"{len(usual)} held-out digits; flagged unfamiliar one by one: as they are "
          f"{np.mean([e['status'] == 'unfamiliar' for e in usual]):.1%}, "
          + ", ".join(f"{n} {np.mean([e['status'] == 'unfamiliar' for e in c]):.1%}" for n, c in changed.items()))
    print("accuracy: as they are " + f"{np.mean([e['label'] == e['truth'] for e in usual]):.1%}, " + ", ".join(
        f"{n} {np.mean([e['label'] == e['truth'] for e in c]):.1%}" for n, c in changed.items()))
    rng = np.random.default_rng(0)
    print(f"windows of {WINDOW} images, {STREAMS} seeded streams of each kind")
    print("statistic\tfalse alarms (no shift)\t" + "\t".join(f"{n}: detected, median delay" for n in changed))
    for statistic in ("share", "typicality", "either"):
        quiet = [judged([usual[i] for i in rng.permutation(len(usual))[:QUIET]], familiarity, statistic)
                 for _ in range(STREAMS)]
        false_rate = sum(map(sum, quiet)) / sum(map(len, quiet))
        cells = []
        for entries in changed.values():
            delays = []
            for _ in range(STREAMS):
                stream = ([usual[i] for i in rng.permutation(len(usual))[:BEFORE]]
                          + [entries[i] for i in rng.permutation(len(entries))[:AFTER]])
                alarms = judged(stream, familiarity, statistic)[BEFORE // WINDOW:]
                first = next((k for k, a in enumerate(alarms) if a), None)
                delays.append(None if first is None else (first + 1) * WINDOW)
            found = [d for d in delays if d is not None]
            cells.append(f"{len(found)}/{STREAMS}, {statistics.median(found) if found else '-'} images")
        print(f"{statistic}\t{false_rate:.2%} of {sum(map(len, quiet))} windows\t" + "\t".join(cells))


if __name__ == "__main__":
    main()
