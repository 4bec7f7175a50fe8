"""Label assist: rank unlabelled images by how much an expert's label would teach the model (the least
confident first: the smallest margin between the two most probable classes), each with the model's
suggestion, written as a labels CSV the expert completes and imports (the importer reads path,label CSVs;
rows left without a label are skipped). Uses the exported model through onnxruntime, like `predict`. The
CLI's `suggest` writes the ranking; the window's label assist shows it with heat maps and writes what the
expert confirms (data.confirmed)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from desktop_tl.core.atomic import atomic_write_csv
from desktop_tl.core.deploy.predict import OnnxClassifier, collect_inputs
from desktop_tl.core.errors import Cancelled, UserError
from desktop_tl.core.label_rules import not_for_multi_label


def least_certain_first(probabilities: np.ndarray) -> np.ndarray:
    """Row indices in the order an expert should label them: by the margin between each row's two largest
    probabilities, smallest first (where the model hesitates most, a label teaches it most: margin sampling),
    taken in turns from each suggested class, so that every stretch of the list covers the classes. On
    scikit-learn's digits from 2 labels per class the turns cut the cold-start loss of plain margin sampling
    against random choice from 4.4 to 1.9 points at 40 labels and lead it by 2-3 points from 80 labels on
    (benchmarks/label_assist.py)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    by_margin = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")
    suggested = probabilities.argmax(axis=1)[by_margin]
    turn = np.zeros(len(by_margin), dtype=np.int64)      # 0 for each class's least certain row, 1 for its next...
    for k in np.unique(suggested):
        turn[suggested == k] = np.arange(int((suggested == k).sum()))
    return by_margin[np.lexsort((np.arange(len(by_margin)), turn))]


@dataclass(frozen=True)
class Suggestion:
    """One unlabelled image: its path (relative to the CSV), the suggested class and how sure the model is."""

    path: str
    suggested: str
    probability: float
    margin: float          # top probability minus the second: small = a label here teaches the model most
    heatmap: Image.Image | None = field(default=None, compare=False, repr=False)   # for the suggested class


def rank_unlabelled(model: Path, folder: Path, csv_dir: Path, heatmaps: bool = False,
                    progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> list[Suggestion]:
    """Suggestions for every readable image under `folder`, least confident first, paths relative to
    `csv_dir` (where the labels CSV will live); with `heatmaps` (and a model that has them) each carries the
    heat map of its suggested class. `progress(done, total)` per image; `should_stop()` raises Cancelled."""
    classifier = OnnxClassifier(model)
    if classifier.multi_label:
        raise not_for_multi_label("Label assist")
    inputs = collect_inputs([folder])
    predictions = []
    for done, prediction in enumerate(classifier.predict_files(inputs, heatmaps=heatmaps), start=1):
        if should_stop and should_stop():
            raise Cancelled()
        predictions.append(prediction)
        if progress:
            progress(done, len(inputs))
    read = [(file, p) for (file, _), p in zip(inputs, predictions, strict=True) if not p.error]
    if not read:
        raise UserError(f"None of the {len(inputs)} images in {folder.name} could be read.",
                        "Check that the folder holds image or DICOM files.")
    probabilities = np.array([[p.probabilities[c] for c in classifier.classes] for _, p in read])
    suggestions = []
    for i in least_certain_first(probabilities):
        file, p = read[i]
        top = sorted(p.probabilities.values(), reverse=True)
        relative = Path(os.path.relpath(file.resolve(), Path(csv_dir).resolve())).as_posix()
        suggestions.append(Suggestion(relative, p.label, p.probability, top[0] - top[1], p.heatmap))
    return suggestions


def write_suggestions(path: Path, suggestions: list[Suggestion]) -> None:
    """The labels CSV to complete: path, an empty label, then the suggestion (atomically)."""
    atomic_write_csv(path, [["path", "label", "suggested", "probability", "margin"],
                            *([s.path, "", s.suggested, f"{s.probability:.4f}", f"{s.margin:.4f}"]
                              for s in suggestions)])
