"""Model quality with the defaults: the automatic recipe against today's old defaults and two hand-written
strong baselines, on real labelled image sets available offline (benchmarks/quality_data.py).

Systems, each on the same split (the app's default 70/15/15, seed 0; `textures` has its own folders):
- `old`:       the defaults before the automatic recipe (head only, 8 epochs, AdamW 1e-3, light augmentation,
               label smoothing 0.1, the model's own 224 px with its centre crop).
- `quick`, `balanced`, `best`: `--recipe auto` with that time budget (2, 10, 60 minutes).
- `logreg`:    a converged logistic regression (scikit-learn, L-BFGS) on the frozen EfficientNet-Lite0 features
               at 224 px, C chosen on validation by log loss, classes weighted when imbalanced.
- `svm`:       an RBF support-vector machine (scikit-learn) on the raw pixels at 32 px, C and gamma chosen on
               validation by accuracy: the classical baseline a recipe must beat on small images.
- `fullft`:    a plain full fine-tune (every layer, AdamW 3e-4, warm-up + cosine, light augmentation, label
               smoothing 0.1, 224 px, classes weighted when imbalanced, best validation epoch kept) given 3x the
               wall time that `balanced` took on the same set in the same run.

Every figure is on the test split, which no choice saw; the minority sensitivity is the recall of the
smallest training class (for balanced sets: the worst class's recall). Wall time runs from import to the
finished evaluation. Every set with a `NAME_heldout` folder (`digits`: 1,497 digits; `mnist_few` and `animals`:
2,000 images each) also reports, for the automatic recipe, the exported ONNX model's accuracy on those images,
which were never part of the dataset, and for `logreg` and `svm` their classifier's.

    pip install -e ".[bench]"
    python benchmarks/quality.py --data /tmp/quality-data [--sets digits,faces] [--systems quick,old]
    python benchmarks/quality.py --data /tmp/quality-data --table     # the Markdown table of all results so far
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from common import isolated_cache, machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data

SYSTEMS = ("old", "logreg", "svm", "quick", "balanced", "best", "fullft")
RESULTS = "quality_results.json"


def _split():
    """The app's default split (70/15/15, seed 0), as a new user gets it."""
    from desktop_tl.core.config import SplitConfig

    return SplitConfig()


def _summary(metrics: dict, classes: list[str], train_counts: list[int]) -> dict:
    test = metrics["test"]
    recalls = {c: v["recall"] for c, v in test["per_class"].items() if v["recall"] is not None}
    smallest = min(train_counts)
    minority = [classes[k] for k, n in enumerate(train_counts) if n == smallest]
    return {"accuracy": test["accuracy"], "balanced_accuracy": test["balanced_accuracy"],
            "roc_auc": test["roc_auc_ovr"], "minority_sensitivity": min(recalls[c] for c in minority),
            "minority": minority[0] if len(minority) == 1 else "worst class", "test_images": test["images"]}


def _train_counts(index) -> list[int]:
    counts = index.counts()
    return [counts[c]["train"] for c in index.classes]


def run_engine(data: Path, work: Path, config, label: str) -> dict:
    """Train one run with the engine (as the CLI does) and summarise its test figures."""
    from desktop_tl.core.events import Failed, Finished, Planned
    from desktop_tl.core.runs.folder import create_run, load_index
    from desktop_tl.core.training.run import train_run

    run = work / label
    shutil.rmtree(run, ignore_errors=True)
    started = time.perf_counter()
    create_run(run, data, config, _split())
    finished, plan = None, None
    for event in train_run(run):
        if isinstance(event, Failed):
            raise RuntimeError(f"{label}: {event.what}")
        if isinstance(event, Planned):
            plan = event.lines
            print("\n".join(event.lines), flush=True)
        if isinstance(event, Finished):
            finished = event
    seconds = time.perf_counter() - started
    index = load_index(run)
    result = _summary(finished.metrics, index.classes, _train_counts(index))
    result.update(seconds=round(seconds, 1), epochs=finished.epochs_done, best_epoch=finished.best_epoch,
                  plan=list(plan or []), transfer_check=finished.metrics.get("transfer_check"),
                  decision=finished.metrics.get("decision"))
    return result


def _heldout_files(heldout: Path | None) -> tuple[list[Path], list[str]]:
    """The held-out images and their classes (the folder names), or nothing."""
    if heldout is None or not heldout.is_dir():
        return [], []
    files = sorted(p for p in heldout.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return files, [f.parent.name for f in files]


def _heldout_figures(predicted: list[str], truth: list[str]) -> dict:
    """Accuracy and the weakest class's sensitivity on the held-out images."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    recalls = {c: float((predicted[truth == c] == c).mean()) for c in sorted(set(truth.tolist()))}
    weakest = min(recalls, key=recalls.get)
    return {"heldout_accuracy": float((predicted == truth).mean()), "heldout_images": len(truth),
            "heldout_weakest_sensitivity": recalls[weakest], "heldout_weakest": weakest}


def run_svm(data: Path, heldout: Path | None) -> dict:
    """An RBF SVM on raw pixels (32 px, RGB, scaled to 0-1), C and gamma chosen on validation."""
    from PIL import Image
    from sklearn.svm import SVC

    from desktop_tl.core.data.imageio import load_image
    from desktop_tl.core.data.importer import import_dataset
    from desktop_tl.core.evaluation.metrics import compute_metrics

    started = time.perf_counter()
    index = import_dataset(data, _split())

    def pixels(paths) -> np.ndarray:
        return np.stack([np.asarray(load_image(p).resize((32, 32), Image.Resampling.BILINEAR), np.float32).ravel()
                         / 255.0 for p in paths])

    x = {s: pixels([index.abs_path(sample) for sample in index.split(s)]) for s in ("train", "val", "test")}
    y = {s: np.array([sample.label for sample in index.split(s)]) for s in ("train", "val", "test")}
    best = None
    for c in (1.0, 3.0, 10.0, 30.0):
        for gamma in ("scale", 0.3 / x["train"].shape[1], 3.0 / x["train"].shape[1]):
            clf = SVC(C=c, gamma=gamma, probability=True, random_state=0).fit(x["train"], y["train"])
            accuracy = float((clf.predict(x["val"]) == y["val"]).mean())
            if best is None or accuracy > best[0]:
                best = (accuracy, c, gamma, clf)
    metrics = {"test": compute_metrics(y["test"], best[3].predict_proba(x["test"]), index.classes)}
    result = _summary(metrics, index.classes, _train_counts(index))
    result.update(seconds=round(time.perf_counter() - started, 1), C=best[1], gamma=str(best[2]))
    files, truth = _heldout_files(heldout)
    if files:
        result.update(_heldout_figures([index.classes[k] for k in best[3].predict(pixels(files))], truth))
    return result


def run_logreg(data: Path, work: Path, heldout: Path | None = None) -> dict:
    """Frozen Lite0 features at the model's own preprocessing, scikit-learn logistic regression."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from desktop_tl.core.data.importer import import_dataset
    from desktop_tl.core.data.loaders import ImageDataset, make_loader
    from desktop_tl.core.data.preprocess import Preprocessing
    from desktop_tl.core.data.transforms import eval_transform
    from desktop_tl.core.evaluation.metrics import compute_metrics
    from desktop_tl.core.models.factory import create_model
    from desktop_tl.core.models.structure import data_config

    started = time.perf_counter()
    index = import_dataset(data, _split())
    model, _ = create_model("efficientnet_lite0", "bundled", len(index.classes))
    model.eval().to(memory_format=torch.channels_last)
    prep = Preprocessing.from_data_config(data_config(model))
    features, labels = {}, {}
    with torch.no_grad():
        for split in ("train", "val", "test"):
            loader = make_loader(ImageDataset(index, index.split(split), eval_transform(prep)), 32, False, 0, 1)
            chunks, ys = [], []
            for images, batch_labels, _, _ in loader:
                images = images.contiguous(memory_format=torch.channels_last)
                chunks.append(model.forward_head(model.forward_features(images), pre_logits=True).numpy())
                ys.append(batch_labels.numpy())
            features[split], labels[split] = np.concatenate(chunks), np.concatenate(ys)
    counts = _train_counts(index)
    weighting = "balanced" if max(counts) > 1.5 * min(counts) else None
    best = None
    for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=5000, class_weight=weighting).fit(features["train"], labels["train"])
        loss = log_loss(labels["val"], clf.predict_proba(features["val"]), labels=list(range(len(index.classes))))
        if best is None or loss < best[0]:
            best = (loss, c, clf)
    probs = best[2].predict_proba(features["test"])
    metrics = {"test": compute_metrics(labels["test"], probs, index.classes)}
    result = _summary(metrics, index.classes, counts)
    result.update(seconds=round(time.perf_counter() - started, 1), C=best[1])
    files, truth = _heldout_files(heldout)
    if files:
        from desktop_tl.core.data.imageio import load_image
        from desktop_tl.core.data.preprocess import preprocess

        with torch.no_grad():
            held = np.concatenate([
                model.forward_head(model.forward_features(torch.from_numpy(np.stack(
                    [preprocess(load_image(f), prep) for f in files[k:k + 64]])).contiguous(
                    memory_format=torch.channels_last)), pre_logits=True).numpy()
                for k in range(0, len(files), 64)])
        result.update(_heldout_figures([index.classes[k] for k in best[2].predict(held)], truth))
    return result


def old_defaults():
    from desktop_tl.core.config import TrainConfig

    return TrainConfig(recipe="custom", freeze="head", epochs=8, batch_size=32, lr=1e-3, augment="light",
                       label_smoothing=0.1, weight_decay=0.05, warmup_epochs=1.0)


def full_fine_tune(data: Path, seconds: float):
    """A plain full fine-tune whose epochs fill `seconds` on this machine (measured speed, as the recipe plans)."""
    import torch

    from desktop_tl.core.config import TrainConfig
    from desktop_tl.core.data.importer import import_dataset
    from desktop_tl.core.models.factory import create_model
    from desktop_tl.core.training.throughput import measure_throughput
    from desktop_tl.core.training.tuning import choose_layout

    index = import_dataset(data, _split())
    counts = _train_counts(index)
    model, _ = create_model("efficientnet_lite0", "bundled", len(index.classes))
    layout = choose_layout("auto", torch.device("cpu"), model, "efficientnet_lite0", (224, 224), 16, "all")
    speed, _ = measure_throughput(model, "efficientnet_lite0", 224, torch.device("cpu"), layout.channels_last)
    n_train, n_eval = sum(counts), len(index.split("val"))
    epoch = n_train / speed.train_ips(224) + n_eval / speed.forward_ips(224)
    epochs = int(max(1, min(40, (seconds - 15) // epoch)))
    return TrainConfig(recipe="custom", freeze="all", epochs=epochs, batch_size=32, lr=3e-4, augment="light",
                       label_smoothing=0.1, class_weighted=max(counts) > 1.5 * min(counts),
                       early_stopping_patience=max(3, epochs // 4))


def heldout_figures(run: Path, heldout: Path) -> dict:
    """The run's exported ONNX model (onnxruntime) on images that were never in the dataset."""
    from desktop_tl.core.deploy.export import export_onnx
    from desktop_tl.core.deploy.predict import OnnxClassifier, collect_inputs

    export_onnx(run)
    classifier = OnnxClassifier(run / "model.onnx")
    files = collect_inputs([heldout])
    predictions = list(classifier.predict_files(files, batch_size=64))
    return _heldout_figures([p.label for p in predictions], [Path(p.path).parent.name for p in predictions])


def run_system(name: str, system: str, folders: dict[str, Path], work: Path, done: dict,
               model: str | None = None) -> dict:
    from desktop_tl.core.config import TrainConfig, parse_budget

    data = folders[name]
    if system == "logreg":
        return run_logreg(data, work, folders.get(f"{name}_heldout"))
    if system == "svm":
        return run_svm(data, folders.get(f"{name}_heldout"))
    if system == "old":
        return run_engine(data, work, old_defaults(), f"{name}-old")
    if system == "fullft":
        reference = done.get("balanced")
        if reference is None:
            raise RuntimeError("fullft needs the balanced result of the same set first")
        seconds = 3 * reference["seconds"]
        result = run_engine(data, work, full_fine_tune(data, seconds), f"{name}-fullft")
        result["given_seconds"] = round(seconds, 1)
        return result
    config = TrainConfig(recipe="auto", budget=parse_budget(system), **({"model": model} if model else {}))
    label = f"{name}-{system}" + (f"-{model}" if model else "")
    result = run_engine(data, work, config, label)
    heldout = folders.get(f"{name}_heldout")
    if heldout is not None and heldout.is_dir():
        result.update(heldout_figures(work / label, heldout))
    return result


def table(results: dict) -> str:
    """The Markdown table of results: one row per set and system."""
    rows = ["| set | system | test acc. | balanced acc. | ROC AUC | minority sensitivity | wall time | notes |",
            "|---|---|---|---|---|---|---|---|"]
    for name, systems in results.items():
        if name.startswith("_"):
            continue
        for system in [*SYSTEMS, *sorted(k for k in systems if k not in SYSTEMS)]:
            r = systems.get(system)
            if r is None:
                continue
            notes = []
            if "heldout_accuracy" in r:
                count = r.get("heldout_images", 1497 if name == "digits" else None)  # older results lack the count
                held = f"{count:,} held-out images" if count else "held-out images"
                weakest = (f" (weakest class {r['heldout_weakest']!r}: {r['heldout_weakest_sensitivity']:.2f})"
                           if "heldout_weakest" in r else "")
                notes.append(f"{held}: {r['heldout_accuracy']:.3f}{weakest}")
            if r.get("transfer_check") and not r["transfer_check"]["helps"]:
                notes.append("pretraining did not help")
            if "epochs" in r and system != "old":
                notes.append(f"{r['epochs']} epochs, best {r['best_epoch']}")
            if "given_seconds" in r:
                notes.append(f"given {r['given_seconds'] / 60:.1f} min")
            auc = "n/a" if r["roc_auc"] is None else f"{r['roc_auc']:.3f}"
            rows.append(f"| {name} ({r['test_images']} test) | {system} | {r['accuracy']:.3f} | "
                        f"{r['balanced_accuracy']:.3f} | {auc} | {r['minority_sensitivity']:.2f} ({r['minority']}) | "
                        f"{r['seconds'] / 60:.1f} min | {'; '.join(notes)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder for the image sets (made if missing)")
    parser.add_argument("--sets", default=",".join(quality_data.SETS))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--table", action="store_true", help="print the table of the results so far and exit")
    parser.add_argument("--model", help="another backbone for the automatic recipes (results kept as SYSTEM@MODEL)")
    args = parser.parse_args()
    results_file = args.data / RESULTS
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if args.table:
        print(results.get("_machine", ""))
        print(table(results))
        return
    folders = quality_data.ensure(args.data, quality_data.SETS)
    for name in quality_data.SETS:
        if (args.data / f"{name}_heldout").is_dir():
            folders[f"{name}_heldout"] = args.data / f"{name}_heldout"
    work = isolated_cache()
    results["_machine"] = machine()
    print(results["_machine"], flush=True)
    for name in args.sets.split(","):
        for system in args.systems.split(","):
            print(f"== {name} / {system} ({time.strftime('%H:%M:%S')})", flush=True)
            done = results.setdefault(name, {})
            key = f"{system}@{args.model}" if args.model else system
            done[key] = run_system(name, system, folders, work, done, args.model)
            done[key]["load_after"] = round(os.getloadavg()[0], 2)
            print(json.dumps({k: v for k, v in done[key].items() if k != "plan"}), flush=True)
            results_file.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
