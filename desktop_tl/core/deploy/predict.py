"""Classify images with an exported ONNX model, using only onnxruntime, numpy, Pillow and pydicom.

This module must work on a machine where torch is not installed.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from desktop_tl.core.atomic import atomic_write_bytes, atomic_write_text, csv_text
from desktop_tl.core.data.imageio import IMAGE_SUFFIXES, ImageLoadError, is_dicom_file, load_image
from desktop_tl.core.data.preprocess import Preprocessing, resize_center_crop, to_normalized_array
from desktop_tl.core.decision import (
    STATUS_RULES_KEY,
    UNFAMILIARITY_OUTPUT,
    Calibration,
    Decision,
    Familiarity,
    PredictionSets,
    Referral,
    predict_labels,
    source_words,
    statuses,
)
from desktop_tl.core.deploy.heatmaps import CAM_OUTPUT, overlay
from desktop_tl.core.errors import UserError
from desktop_tl.core.label_rules import MULTI_LABEL, LabelRules


@dataclass(frozen=True)
class Prediction:
    """One image's result; `error` is set (and the rest empty) when it could not be read."""

    path: str
    label: str | None
    probability: float | None
    probabilities: dict[str, float]
    error: str | None = None
    heatmap: Image.Image | None = None     # where the model looked for the predicted class (when asked for)
    status: str | None = None              # answered | uncertain | unfamiliar (None: not read)
    unfamiliarity: float | None = None     # the score behind "unfamiliar", when the model has the check
    sets: dict[str, tuple[str, ...]] = field(default_factory=dict)   # coverage ("0.9") -> its prediction set
    labels: tuple[str, ...] | None = None   # multi-label: the labels the image shows (() for none of them)
    label_heatmaps: dict[str, Image.Image] = field(default_factory=dict)   # multi-label: one per label shown


class OnnxClassifier:
    """An exported desktop_tl model: preprocessing, classes and the decision rule come from its metadata."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise UserError(f"No model file at {model_path}.", "Give the .onnx file written by `desktop-tl export`.")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        try:
            payload = model_path.read_bytes()
        except OSError as exc:
            raise UserError(f"Cannot read {model_path.name}: {exc.strerror or exc}.",
                            "Check that the file is readable.") from exc
        _refuse_external_data(payload, model_path.name)
        try:
            # Loaded from bytes: a model that points at external data files (possibly outside its
            # folder) cannot be resolved and is refused instead of reading arbitrary files.
            self.session = ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"{model_path.name} is not a self-contained ONNX model that can be loaded ({exc}).",
                            "Export the model again with `desktop-tl export`.") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        try:
            self.classes: list[str] = json.loads(props["classes"])
            self.prep = Preprocessing.from_dict({
                "input_size": json.loads(props["input_size"]), "interpolation": props["interpolation"],
                "crop_pct": json.loads(props["crop_pct"]), "mean": json.loads(props["mean"]),
                "std": json.loads(props["std"])})
        except (KeyError, ValueError, TypeError, RecursionError) as exc:
            raise UserError(f"{model_path.name} lacks desktop_tl's preprocessing metadata.",
                            "Use a model exported by desktop_tl.") from exc
        if not (isinstance(self.classes, list) and len(self.classes) >= 2
                and all(isinstance(c, str) for c in self.classes)):
            raise UserError(f"{model_path.name} has damaged class names in its metadata.",
                            "Export the model again with `desktop-tl export`.")
        self.metadata = dict(props)
        self.decision: Decision | None = Decision.from_json(props.get("decision"), self.classes)
        self.calibration: Calibration | None = Calibration.from_json(props.get("calibration"))   # in the graph
        self.referral: Referral | None = Referral.from_json(props.get("referral"))
        self.prediction_sets: PredictionSets | None = PredictionSets.from_json(props.get("prediction_sets"))
        self.label_rules: LabelRules | None = None     # a multi-label model's thresholds (core.label_rules)
        if props.get("task") == MULTI_LABEL:
            self.label_rules = LabelRules.from_metadata(props.get("label_rules"), len(self.classes))
            if self.label_rules is None:
                raise UserError(f"{model_path.name} gives several labels per image but its thresholds are "
                                "missing or damaged.", "Export the model again with `desktop-tl export`.")
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.has_heatmaps = CAM_OUTPUT in outputs
        familiarity = Familiarity.from_json(props.get("familiarity"))
        self.familiarity: Familiarity | None = familiarity if UNFAMILIARITY_OUTPUT in outputs else None

    @property
    def has_status_rule(self) -> bool:
        """False for a model exported before desktop_tl referred images: it answers every image."""
        return STATUS_RULES_KEY in self.metadata

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a preprocessed NCHW float32 batch."""
        return self.session.run(["probabilities"], {self.input_name: batch.astype(np.float32, copy=False)})[0]

    def predict_with_activations(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and, when the model has them, class activation maps (images, classes, h, w)."""
        probs, cams, _ = self.predict_outputs(batch, heatmaps=True)
        return probs, cams

    def predict_outputs(self, batch: np.ndarray, heatmaps: bool = False
                        ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Probabilities, class activation maps (when asked for and the model has them) and unfamiliarity
        scores (when the model has the check), from one run of the graph."""
        names = ["probabilities"] + ([CAM_OUTPUT] if heatmaps and self.has_heatmaps else []) + \
            ([UNFAMILIARITY_OUTPUT] if self.familiarity is not None else [])
        found = dict(zip(names, self.session.run(names, {self.input_name: batch.astype(np.float32, copy=False)}),
                         strict=True))
        return found["probabilities"], found.get(CAM_OUTPUT), found.get(UNFAMILIARITY_OUTPUT)

    @property
    def multi_label(self) -> bool:
        """True for a model that gives each image a set of labels (sigmoid outputs and per-label thresholds)."""
        return self.label_rules is not None

    def statuses(self, probs: np.ndarray, scores: np.ndarray | None) -> list[str]:
        """Each image's status under the model's rules (answered, uncertain or unfamiliar)."""
        if self.multi_label:
            return ["answered"] * len(probs)
        return statuses(probs, self.classes, self.decision, self.referral, scores, self.familiarity)

    def predict_files(self, files: Iterable[tuple[Path, str]], batch_size: int = 16,
                      heatmaps: bool = False) -> Iterator[Prediction]:
        """Predictions for (file, display path) pairs, in input order; with `heatmaps` (and a model that has
        them) each carries the heat map of its predicted class over the model's input crop.

        An unreadable file yields a Prediction with `error` set instead of stopping the run.
        """
        files = list(files)
        for start in range(0, len(files), batch_size):
            arrays: dict[int, np.ndarray] = {}
            crops: dict[int, Image.Image] = {}
            errors: dict[int, str] = {}
            for offset, (path, _) in enumerate(files[start:start + batch_size]):
                try:
                    crops[offset] = resize_center_crop(load_image(path), self.prep)
                    arrays[offset] = to_normalized_array(crops[offset], self.prep)
                except (ImageLoadError, OSError) as exc:
                    errors[offset] = str(exc)
            probs, cams, scores, status = {}, {}, {}, {}
            if arrays:
                batch_probs, batch_cams, batch_scores = self.predict_outputs(np.stack(list(arrays.values())), heatmaps)
                probs = dict(zip(arrays, batch_probs, strict=True))
                cams = dict(zip(arrays, batch_cams, strict=True)) if batch_cams is not None else {}
                scores = dict(zip(arrays, batch_scores.tolist(), strict=True)) if batch_scores is not None else {}
                status = dict(zip(arrays, self.statuses(batch_probs, batch_scores), strict=True))
                sets = self.prediction_sets
                named = {f"{c:g}": dict(zip(arrays, sets.sets(batch_probs, self.classes, c), strict=True))
                         for c in sets.coverages()} if sets else {}
            for offset, (_, shown) in enumerate(files[start:start + batch_size]):
                if offset in errors:
                    yield Prediction(shown, None, None, {}, error=errors[offset])
                    continue
                row = probs[offset]
                if self.multi_label:
                    yield self._label_set(shown, row, crops[offset], cams.get(offset))
                    continue
                k = int(predict_labels(row[None], self.classes, self.decision)[0])
                heat = overlay(crops[offset], cams[offset][k]) if offset in cams else None
                yield Prediction(shown, self.classes[k], float(row[k]),
                                 {c: float(v) for c, v in zip(self.classes, row, strict=True)}, heatmap=heat,
                                 status=status[offset], unfamiliarity=scores.get(offset),
                                 sets={c: found[offset] for c, found in named.items()})


    def _label_set(self, shown: str, row: np.ndarray, crop: Image.Image, cams: np.ndarray | None) -> Prediction:
        """A multi-label prediction: the labels whose probability reaches their threshold (most probable first),
        with a heat map for each when the model has them."""
        passed = self.label_rules.shown(row[None])[0]
        order = [k for k in np.argsort(-row) if passed[k]]
        labels = tuple(self.classes[k] for k in order)
        maps = {self.classes[k]: overlay(crop, cams[k]) for k in order} if cams is not None else {}
        top = order[0] if order else int(np.argmax(row))
        return Prediction(shown, ";".join(labels), float(row[top]),
                          {c: float(v) for c, v in zip(self.classes, row, strict=True)},
                          heatmap=maps.get(self.classes[top]), status="answered", labels=labels, label_heatmaps=maps)


def _refuse_external_data(payload: bytes, name: str) -> None:
    """UserError when the model keeps weights in external files: exports are self-contained.

    An external-data entry names a file to read (`../..`, an absolute path); onnxruntime
    versions differ in how they check those, so the model is refused here before it loads.
    Needs the `onnx` package; without it onnxruntime's own checks remain.
    """
    try:
        import onnx
        from onnx.external_data_helper import _get_all_tensors, uses_external_data
    except ImportError:
        return
    try:
        model = onnx.load_model_from_string(payload)
    except Exception as exc:
        raise UserError(f"{name} is not a valid ONNX model ({type(exc).__name__}).",
                        "Export the model again with `desktop-tl export`.") from exc
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            where = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise UserError(f"{name} refers to weights in another file ({where!r}); it was refused, because "
                            "desktop_tl models are one self-contained file and reading files named inside a model "
                            "could expose other data.",
                            "Use the model.onnx written by `desktop-tl export`.")


def is_input_file(path: Path) -> bool:
    """True for a file `predict` and `watch` read: an image by its suffix, or DICOM (suffix or preamble)."""
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(path)


def image_files(folder: Path, leave_out: Path | None = None) -> Iterator[Path]:
    """Image and DICOM files under `folder`, recursively, hidden files and folders (and `leave_out`) left out,
    sorted."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path != leave_out and is_input_file(path):
                yield path


def collect_inputs(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """Image and DICOM files from files and folders (recursively), with the path to show.

    Shown paths start with what the user typed, so they are absolute or relative to it.
    """
    found: list[tuple[Path, str]] = []
    for given in paths:
        given = Path(given)
        if given.is_dir():
            found += [(path, str(path)) for path in image_files(given)]
        elif given.exists():
            found.append((given, str(given)))
        else:
            raise UserError(f"{given} does not exist.", "Check the path; folders are searched recursively.")
    if not found:
        raise UserError("No image or DICOM file found in the given paths.",
                        f"Supported: {', '.join(sorted(IMAGE_SUFFIXES))} and DICOM.")
    return found


def describe_decision(decision: Decision | None, calibration: Calibration | None = None,
                      referral: Referral | None = None, familiarity: Familiarity | None = None,
                      status_rule: bool = True) -> str:
    """The decision rule (the calibration of the probabilities, and the status rules) in words, for the CLI and
    the window; `status_rule` False: the model predates the status rules and answers every image."""
    if decision is None:
        text = "Decision: the most probable class."
    else:
        text = f"Decision: {decision.rule()}, else the other class."
    if calibration is not None:
        text += (f" Probabilities are calibrated (temperature {calibration.temperature:.2f}, fitted on "
                 f"{source_words(calibration.fitted_on)}).")
    if familiarity is not None:
        text += f" Unfamiliar images: {familiarity.rule()}."
    if referral is not None:
        text += f" Referral: {referral.rule()}."
    if status_rule and referral is None:
        text += (" Every image is answered" + (" unless unfamiliar" if familiarity is not None else "") +
                 ": this run has no referral rule (referral turned off, or too few held-out images to set one).")
    if not status_rule:
        text += (" This model was exported before desktop_tl could refer images to a person: it has no status "
                 "rule, and every image is 'answered'. Train the run again to add them.")
    return text


STATUS_WORDS = {"answered": "answered", "uncertain": "uncertain: refer to a person",
                "unfamiliar": "unfamiliar: unlike the training images, refer to a person"}


def prediction_record(p: Prediction) -> dict[str, Any]:
    """One prediction as JSON (predict --json): what the CSV row says, the probabilities as an object."""
    if p.labels is not None:
        return {"path": p.path, "labels": list(p.labels), "probabilities": p.probabilities, "status": p.status,
                "error": p.error}
    return {"path": p.path, "label": p.label, "probability": p.probability, "status": p.status,
            "probabilities": p.probabilities, "unfamiliarity": p.unfamiliarity,
            "sets": {c: list(named) for c, named in p.sets.items()}, "error": p.error}


def predictions_csv(predictions: list[Prediction], classes: list[str], coverage: float | None = None,
                    multi_label: bool = False) -> str:
    """CSV text: path,label,probability,status, then one column per class (with `coverage`, a `set` column of the
    classes of its prediction set, ";"-joined), an `error` column last. A multi-label model's: path, a `labels`
    column of the labels shown (";"-joined, empty for none of them), status, one probability column per label,
    error."""
    if multi_label:
        return csv_text([["path", "labels", "status", *classes, "error"],
                         *([p.path, ";".join(p.labels or ()), p.status or "",
                            *[f"{p.probabilities[c]:.6f}" if c in p.probabilities else "" for c in classes],
                            p.error or ""] for p in predictions)])
    key = f"{coverage:g}" if coverage is not None else None
    return csv_text([["path", "label", "probability", "status", *classes, *(["set"] if key else []), "error"],
                     *([p.path, p.label or "", "" if p.probability is None else f"{p.probability:.6f}",
                        p.status or "",
                        *[f"{p.probabilities[c]:.6f}" if c in p.probabilities else "" for c in classes],
                        *([";".join(p.sets.get(key, ()))] if key else []),
                        p.error or ""] for p in predictions)])


def write_predictions_csv(path: Path, predictions: list[Prediction], classes: list[str],
                          coverage: float | None = None, multi_label: bool = False) -> None:
    """Write the predictions CSV atomically (see `predictions_csv`)."""
    atomic_write_text(Path(path), predictions_csv(predictions, classes, coverage, multi_label))


def heatmap_name(number: int, shown_path: str, label: str | None = None) -> str:
    """The heat map's file name for the `number`-th image (1-based, in the order printed and in the CSV):
    the number and the image's own file name, never the folders above it (and a multi-label model's label)."""
    named = "" if label is None else "." + "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    return f"{number:05d}_{Path(shown_path).name}{named}.heatmap.png"


def write_heatmaps(folder: Path, predictions: Iterable[Prediction]) -> int:
    """Write each prediction's heat map as a PNG in `folder` (atomically; a multi-label prediction's one per label
    shown, the label in the name); the number written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for number, p in enumerate(predictions, start=1):
        maps = ({heatmap_name(number, p.path, label): image for label, image in p.label_heatmaps.items()}
                if p.labels is not None else {heatmap_name(number, p.path): p.heatmap} if p.heatmap else {})
        for name, image in maps.items():
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            atomic_write_bytes(folder / name, buffer.getvalue())
            written += 1
    return written
