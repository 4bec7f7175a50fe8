"""Evaluate a model on a run's splits (PyTorch side); shared by the training loop and `evaluate`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.data.loaders import ImageDataset, make_loader
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.data.transforms import eval_transform
from desktop_tl.core.decision import Calibration, Decision, Referral, positive_class
from desktop_tl.core.evaluation.metrics import compute_metrics
from desktop_tl.core.evaluation.referral import referral_report, risk_coverage_curves
from desktop_tl.core.evaluation.subgroups import run_cautions, test_subgroups
from desktop_tl.core.label_rules import MULTI_LABEL, LabelRules
from desktop_tl.core.models.precision import autocast


@torch.no_grad()
def dataset_outputs(compute: Callable[[torch.Tensor], torch.Tensor], dataset: ImageDataset, device: torch.device,
                    batch_size: int = 32, num_workers: int = -1, amp_dtype: torch.dtype | None = None
                    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """`compute(images)` (one row per image: probabilities, features) for every readable image of `dataset`,
    batch by batch, with the labels and item indices of the images read."""
    outputs, labels, items = [], [], []
    for images, batch_labels, batch_items, _ in make_loader(dataset, batch_size, False, 0, num_workers):
        if len(batch_labels) == 0:
            continue
        with autocast(device, amp_dtype):
            outputs.append(compute(images.to(device)).float().cpu().numpy())
        labels.append(batch_labels.numpy())
        items.extend(batch_items.tolist())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64), []
    return np.concatenate(outputs), np.concatenate(labels), items


def predict_dataset(model: nn.Module, dataset: ImageDataset, device: torch.device, batch_size: int = 32,
                    num_workers: int = -1, amp_dtype: torch.dtype | None = None
                    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Probabilities (softmax; for a multi-label dataset one sigmoid per label), labels (or 0/1 rows of labels)
    and item indices for every readable image of `dataset`."""
    model.eval()
    if dataset.index.multi_label:
        return dataset_outputs(lambda images: torch.sigmoid(model(images).float()), dataset, device, batch_size,
                               num_workers, amp_dtype)
    return dataset_outputs(lambda images: torch.softmax(model(images).float(), 1), dataset, device, batch_size,
                           num_workers, amp_dtype)


def predict_split(model: nn.Module, index: DatasetIndex, split: str, prep: Preprocessing, classes: list[str],
                  device: torch.device, batch_size: int = 32, num_workers: int = -1,
                  amp_dtype: torch.dtype | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Probabilities (images x classes), labels and relative paths of the readable images of a split."""
    dataset = ImageDataset(index, index.split(split), eval_transform(prep))
    probs, labels, items = predict_dataset(model, dataset, device, batch_size, num_workers, amp_dtype)
    return probs.reshape(len(labels), len(classes)), labels, [dataset.samples[i].path for i in items]


def evaluate_splits(model: nn.Module, index: DatasetIndex, prep: Preprocessing, classes: list[str],
                    device: torch.device, batch_size: int = 32, num_workers: int = -1,
                    amp_dtype: torch.dtype | None = None, decision: Decision | None = None,
                    calibration: Calibration | None = None, referral: Referral | None = None) -> dict[str, Any]:
    """Metrics of the validation and test splits, keyed "val" and "test", with the run's calibrated
    probabilities and under its decision rule; with a referral rule, its figures on both ("referral")."""
    result: dict[str, Any] = {}
    predicted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    train = [index.counts()[c]["train"] for c in classes]
    smaller = classes[positive_class(train)] if len(classes) == 2 else None
    for split in ("val", "test"):
        probs, labels, paths = predict_split(model, index, split, prep, classes, device, batch_size, num_workers,
                                             amp_dtype)
        if calibration is not None:
            probs = calibration.apply(probs)
        result[split] = compute_metrics(labels, probs, classes, paths, decision=decision, positive=smaller)
        predicted[split] = (labels, probs)
        if split == "test":
            result["subgroups"] = {"test": test_subgroups(index, paths, labels, probs, classes, decision)}
    if referral is not None:
        result["referral"] = referral_report(referral, decision, classes, predicted)
    result["risk_coverage"] = risk_coverage_curves(decision, classes, predicted)
    return result


def evaluate_run(run_dir: Path, data_root: Path | None = None, which: str = "best") -> dict[str, Any]:
    """Metrics of a run's checkpoint (best by default) on its validation and test splits.

    `data_root` says where the dataset lives now if it moved. metrics.json is not changed.
    """
    from desktop_tl.core.runs.folder import load_index, open_run
    from desktop_tl.core.runs.trained import model_from_checkpoint

    model, meta = model_from_checkpoint(run_dir, which)
    index = load_index(run_dir, data_root)
    prep = Preprocessing.from_dict(meta["preprocessing"])
    info = open_run(run_dir)
    if index.multi_label:
        return _evaluate_label_sets(model, index, prep, meta, which, info.label_rules)
    metrics: dict[str, Any] = {"classes": meta["classes"], "checkpoint": which, "epoch": meta["epoch"],
                               "decision": info.decision.to_dict() if info.decision else None,
                               "calibration": info.calibration.to_dict() if info.calibration else None}
    metrics.update(evaluate_splits(model, index, prep, meta["classes"], torch.device("cpu"),
                                   decision=info.decision, calibration=info.calibration, referral=info.referral))
    metrics["val_source"] = "validation"
    stored = _stored_metrics(Path(run_dir))
    if which == "best" and stored.get("val_source", "validation") != "validation" and "val" in stored:
        # the model learnt from the validation images: their figures are the cross-validation's out-of-fold ones
        metrics["val"], metrics["val_source"] = stored["val"], stored["val_source"]
        if "val" in (stored.get("referral") or {}) and "referral" in metrics:
            metrics["referral"]["val"] = stored["referral"]["val"]
        if "val" in (stored.get("risk_coverage") or {}):
            metrics["risk_coverage"]["val"] = stored["risk_coverage"]["val"]
    if which == "best" and isinstance(stored.get("unfamiliar"), dict):
        metrics["unfamiliar"] = stored["unfamiliar"]     # the check belongs to the delivered model, fitted once
    if which == "best" and isinstance(stored.get("prediction_sets"), dict):
        metrics["prediction_sets"] = stored["prediction_sets"]     # calibrated once, when the run completed
    metrics["cautions"] = run_cautions(meta.get("history") or [], index, meta["classes"], metrics["test"],
                                       metrics["subgroups"]["test"])
    return metrics


def _evaluate_label_sets(model: nn.Module, index: DatasetIndex, prep: Preprocessing, meta: dict[str, Any], which: str,
                         rules: LabelRules | None) -> dict[str, Any]:
    """`evaluate_run` for a multi-label run: its figures under the rules chosen when it completed."""
    from desktop_tl.core.evaluation.multilabel import label_cautions, multilabel_metrics

    classes = meta["classes"]
    metrics: dict[str, Any] = {"task": MULTI_LABEL, "classes": classes, "checkpoint": which, "epoch": meta["epoch"],
                               "label_rules": rules.to_dict() if rules else None, "val_source": "validation"}
    for split in ("val", "test"):
        probs, targets, paths = predict_split(model, index, split, prep, classes, torch.device("cpu"))
        metrics[split] = multilabel_metrics(targets, rules.calibrate(probs) if rules else probs, classes, rules, paths)
    metrics["cautions"] = label_cautions(metrics["test"])
    return metrics


def _stored_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's metrics.json as training wrote it ({} when absent or unreadable)."""
    from desktop_tl.core.runs.folder import METRICS_FILE

    try:
        stored = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return stored if isinstance(stored, dict) else {}
