"""Know when not to answer (issue 20), measured: the statuses the exported model gives, through onnxruntime as
`predict` gives them, on images it never saw.

For each home set with a held-out folder (benchmarks/quality_data.py: `mnist_few`, `animals`, `digits`), the
defaults train one run (`--recipe auto`, Balanced; the referral target its default 5%), export it, and then:
- on the home set's held-out images (never in the dataset): the share answered, the error among the answered
  against the error over all images, and the share flagged unfamiliar (the rule aims at 5%);
- on every other set's images (up to 300 per set, every k-th file in name order): the share flagged
  unfamiliar, and how well the score tells those images from the home set's held-out ones (ROC AUC), side by
  side with the same AUC for the top probability, the confidence a model without the check would show.

    pip install -e ".[bench]"
    python benchmarks/unfamiliar.py --data /tmp/quality-data [--homes mnist_few,animals] [--budget balanced]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import isolated_cache, machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import run_engine

import quality_data

HOMES = ("mnist_few", "animals", "digits")
FOREIGN_PER_SET = 300


def _predict(classifier, files: list[Path]) -> list:
    return [p for p in classifier.predict_files([(f, str(f)) for f in files], batch_size=64) if not p.error]


def _auc(inside: list[float], outside: list[float]) -> float:
    """ROC AUC of telling `outside` (positive: higher score) from `inside`."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score([0] * len(inside) + [1] * len(outside), list(inside) + list(outside)))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def measure_home(home: str, folders: dict[str, Path], work: Path, budget: str) -> dict:
    """Train the defaults on `home`, export, and score the held-out and the foreign images."""
    from desktop_tl.core.config import TrainConfig, parse_budget
    from desktop_tl.core.deploy.export import export_onnx
    from desktop_tl.core.deploy.predict import OnnxClassifier

    trained = run_engine(folders[home], work, TrainConfig(recipe="auto", budget=parse_budget(budget)),
                         f"{home}-{budget}")
    run = work / f"{home}-{budget}"
    export_onnx(run)
    classifier = OnnxClassifier(run / "model.onnx")
    own = _predict(classifier, _image_files(folders[f"{home}_heldout"]))
    truth = [Path(p.path).parent.name for p in own]
    wrong = np.array([p.label != t for p, t in zip(own, truth, strict=True)])
    answered = np.array([p.status == "answered" for p in own])
    flagged = np.array([p.status == "unfamiliar" for p in own])
    result = {"home": home, "train_seconds": trained["seconds"], "heldout_images": len(own),
              "referral": json.loads(classifier.metadata.get("referral", "null")),
              "familiarity": json.loads(classifier.metadata.get("familiarity", "null")),
              "error_all": float(wrong.mean()), "answered_share": float(answered.mean()),
              "error_among_answered": float(wrong[answered].mean()) if answered.any() else None,
              "flagged_share": float(flagged.mean()), "foreign": {}}
    own_score = [p.unfamiliarity for p in own]
    own_confidence = [p.probability for p in own]
    for name in quality_data.SETS:
        if name == home:
            continue
        files = _image_files(folders[name])
        files = files[::max(1, len(files) // FOREIGN_PER_SET)][:FOREIGN_PER_SET]
        foreign = _predict(classifier, files)
        result["foreign"][name] = {
            "images": len(foreign),
            "flagged_share": float(np.mean([p.status == "unfamiliar" for p in foreign])),
            "answered_share": float(np.mean([p.status == "answered" for p in foreign])),
            "auc_unfamiliarity": _auc(own_score, [p.unfamiliarity for p in foreign]),
            # low confidence as the sign of a foreign image: the negated top probability as the score
            "auc_top_probability": _auc([-c for c in own_confidence], [-p.probability for p in foreign])}
        print(f"{home} vs {name}: {result['foreign'][name]}", flush=True)
    return result


def table(results: list[dict]) -> str:
    """The two Markdown tables: the home sets' held-out figures, and foreign images per pair."""
    lines = ["| home set (held-out images) | error over all | answered | error among answered | flagged unfamiliar |",
             "|---|---|---|---|---|"]
    for r in results:
        among = "n/a" if r["error_among_answered"] is None else f"{r['error_among_answered']:.1%}"
        lines.append(f"| {r['home']} ({r['heldout_images']}) | {r['error_all']:.1%} | {r['answered_share']:.1%} | "
                     f"{among} | {r['flagged_share']:.1%} |")
    lines += ["", "| home set | foreign set | flagged unfamiliar | answered | ROC AUC, unfamiliarity score | "
              "ROC AUC, top probability |", "|---|---|---|---|---|---|"]
    for r in results:
        for name, f in r["foreign"].items():
            lines.append(f"| {r['home']} | {name} ({f['images']}) | {f['flagged_share']:.1%} | {f['answered_share']:.1%} "
                         f"| {f['auc_unfamiliarity']:.3f} | {f['auc_top_probability']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder for the image sets (made if missing)")
    parser.add_argument("--homes", default=",".join(HOMES))
    parser.add_argument("--budget", default="balanced", help="the recipe's budget (quick, balanced, best)")
    args = parser.parse_args()
    isolated_cache()
    folders = quality_data.ensure(args.data)
    folders.update({f"{n}_heldout": args.data / f"{n}_heldout" for n in HOMES})
    work = args.data / "unfamiliar_runs"
    work.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    results = []
    started = time.perf_counter()
    for home in args.homes.split(","):
        results.append(measure_home(home, folders, work, args.budget))
        (work / "unfamiliar_results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{time.perf_counter() - started:.0f} s in all\n")
    print(table(results))


if __name__ == "__main__":
    main()
