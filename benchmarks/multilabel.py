"""Several labels per image on real photographs: mosaics of four texture photographs, with the defaults.

Each image is a 2x2 mosaic of 48 px tiles (96 px) showing 1 to 3 of four materials, each material's tiles cut
from its own scikit-image sample photograph (brick, grass, gravel, the moon's surface); listed as `path,labels`.
The dataset's tiles come from the left 60% of each photograph, the held-out mosaics' from the right 40%, so no
held-out tile overlaps a tile the app saw. The app trains with its defaults (`desktop-tl train labels.csv`,
Balanced, 10 minutes), then its exported model is scored through onnxruntime (as `predict` does) on the held-out
mosaics, which no choice ever saw: per label ROC AUC and the sensitivity and specificity at the label's
threshold, and the share of images whose exact set of labels is right; the test split's figures are printed
beside them.

    pip install -e ".[bench]"
    python benchmarks/multilabel.py [--images 400] [--heldout 1000] [--budget 10]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import isolated_cache, machine

MATERIALS = ("brick", "grass", "gravel", "moon")
TILE = 48


def _photographs() -> dict[str, np.ndarray]:
    from skimage import data

    return {name: getattr(data, name)() for name in MATERIALS}


def write_mosaics(folder: Path, count: int, part: tuple[float, float], seed: int) -> Path:
    """`count` mosaics whose tiles come from the `part` (left and right fraction) of each photograph."""
    rng = random.Random(seed)
    photos = _photographs()
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,labels"]
    for i in range(count):
        shown = sorted(rng.sample(MATERIALS, rng.choice((1, 2, 3))))
        tiles = shown + [rng.choice(shown) for _ in range(4 - len(shown))]
        rng.shuffle(tiles)
        mosaic = Image.new("RGB", (2 * TILE, 2 * TILE))
        for k, material in enumerate(tiles):
            photo = photos[material]
            height, width = photo.shape[:2]
            side = rng.randint(TILE, 2 * TILE)             # random scale, as a camera would vary
            low, high = int(part[0] * width), int(part[1] * width) - side
            left, top = rng.randint(low, high), rng.randint(0, height - side)
            crop = Image.fromarray(photo[top:top + side, left:left + side]).convert("RGB").resize((TILE, TILE))
            mosaic.paste(crop, ((k % 2) * TILE, (k // 2) * TILE))
        mosaic.save(folder / f"mosaic_{i:04d}.png")
        rows.append(f"mosaic_{i:04d}.png,{';'.join(shown)}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "labels.csv"


def _held_out_figures(model: Path, table: Path) -> dict:
    """The exported model's figures on the held-out mosaics (onnxruntime, the thresholds in its metadata)."""
    from desktop_tl.core.deploy.predict import OnnxClassifier
    from desktop_tl.core.evaluation.multilabel import multilabel_metrics

    classifier = OnnxClassifier(model)
    rows = [line.split(",") for line in table.read_text().splitlines()[1:]]
    predictions = list(classifier.predict_files([(table.parent / path, path) for path, _ in rows]))
    probabilities = np.array([[p.probabilities[c] for c in classifier.classes] for p in predictions])
    targets = np.array([[c in labels.split(";") for c in classifier.classes] for _, labels in rows], dtype=float)
    return multilabel_metrics(targets, probabilities, classifier.classes, classifier.label_rules)


def _summary(figures: dict) -> dict:
    return {"images": figures["images"], "exact_set_accuracy": figures["exact_set_accuracy"]["value"],
            "micro_f1": figures["micro_f1"], "macro_f1": figures["macro_f1"],
            "per_label": {name: {"auc": row["auc"], "sensitivity": row["sensitivity"]["value"],
                                 "specificity": row["specificity"]["value"], "images": row["images"]}
                          for name, row in figures["per_label"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--heldout", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=10.0, help="minutes")
    args = parser.parse_args()
    print(machine())
    isolated_cache()
    with tempfile.TemporaryDirectory(prefix="dtl_multilabel_") as tmp:
        tmp = Path(tmp)
        table = write_mosaics(tmp / "mosaics", args.images, (0.0, 0.6), seed=0)
        held_out = write_mosaics(tmp / "heldout", args.heldout, (0.6, 1.0), seed=1)
        from desktop_tl.cli import main as cli

        started = time.perf_counter()
        code = cli(["train", str(table), "--out", str(tmp / "run"), "--budget", f"{args.budget:g}"])
        seconds = time.perf_counter() - started
        if code or cli(["export", str(tmp / "run")]):
            return 1
        metrics = json.loads((tmp / "run" / "metrics.json").read_text())
        result = {"seconds": round(seconds, 1), "test": _summary(metrics["test"]),
                  "held_out": _summary(_held_out_figures(tmp / "run" / "model.onnx", held_out)),
                  "label_rules": metrics["label_rules"], "epochs": len(metrics["history"]),
                  "best_epoch": metrics["best_epoch"]}
    print(json.dumps(result, indent=2))
    for part in ("test", "held_out"):
        r = result[part]
        aucs = ", ".join(f"{name} {row['auc']:.3f}" for name, row in r["per_label"].items())
        print(f"{part} ({r['images']} images): exact set {r['exact_set_accuracy']:.3f}, micro F1 {r['micro_f1']:.3f}, "
              f"AUC per label: {aucs}; wall {result['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
