"""Optional int8 static quantization of an exported model, with its accuracy and speed measured first.

`quantize_int8` calibrates on ~32 training images preprocessed exactly as `predict` does, writes
`model.int8.onnx` next to the fp32 file (the preprocessing and class metadata are kept, so
`desktop-tl predict` uses it unchanged), and `compare_models` reports the accuracy of both
models on the run's validation and test images, how often they agree, and their speed, so the
user can decide before using it. Needs onnxruntime and onnx only (no torch).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from desktop_tl.core.atomic import atomic_write_bytes
from desktop_tl.core.data.imageio import ImageLoadError, load_image
from desktop_tl.core.data.index import DatasetIndex, Sample
from desktop_tl.core.data.preprocess import Preprocessing, preprocess
from desktop_tl.core.decision import UNFAMILIARITY_OUTPUT
from desktop_tl.core.errors import UserError
from desktop_tl.core.label_rules import not_for_multi_label

INT8_SUFFIX = ".int8.onnx"
CALIBRATION_IMAGES = 32


def int8_path(fp32: Path) -> Path:
    """`model.onnx` -> `model.int8.onnx` in the same folder."""
    fp32 = Path(fp32)
    stem = fp32.name.removesuffix(".onnx")
    return fp32.with_name(stem + INT8_SUFFIX)


def _arrays(index: DatasetIndex, samples: list[Sample], prep: Preprocessing, limit: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    arrays, labels = [], []
    for sample in samples:
        if limit is not None and len(arrays) >= limit:
            break
        try:
            arrays.append(preprocess(load_image(index.abs_path(sample)), prep))
            labels.append(sample.label)
        except (ImageLoadError, OSError):
            continue
    if not arrays:
        return np.zeros((0, 3, *prep.input_size), np.float32), np.zeros(0, np.int64)
    return np.stack(arrays).astype(np.float32), np.asarray(labels, dtype=np.int64)


def calibration_arrays(index: DatasetIndex, prep: Preprocessing, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """`count` training images (spread over the classes) preprocessed like `predict` does."""
    train = index.split("train")
    by_class: dict[int, list[Sample]] = {}
    for sample in train:
        by_class.setdefault(sample.label, []).append(sample)
    interleaved = [s for group in zip(*by_class.values()) for s in group] if by_class else []
    rest = [s for s in train if s not in set(interleaved)]
    arrays, _ = _arrays(index, interleaved + rest, prep, count)
    if len(arrays) == 0:
        raise UserError("No training image could be read to calibrate the int8 model.",
                        "Make sure the dataset is still next to the run, or pass --data.")
    return arrays


def quantize_int8(fp32: Path, index: DatasetIndex, out: Path | None = None,
                  count: int = CALIBRATION_IMAGES) -> Path:
    """Write an int8 (QDQ, per-channel weights) copy of the exported model `fp32`; returns its path."""
    if index.multi_label:
        raise not_for_multi_label("The int8 export")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from desktop_tl.core.deploy.predict import OnnxClassifier

    fp32 = Path(fp32)
    classifier = OnnxClassifier(fp32)
    arrays = calibration_arrays(index, classifier.prep, count)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(arrays[i:i + 1] for i in range(len(arrays)))

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {classifier.input_name: batch}

    target = Path(out) if out else int8_path(fp32)
    source = onnx.load_model(str(fp32))
    with tempfile.TemporaryDirectory(prefix="desktop_tl_int8_") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        except Exception:  # the pre-processing is an optimisation only
            prepared = fp32
        try:
            quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
                            nodes_to_exclude=_float_tail(onnx.load_model(str(prepared))), per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"CalibTensorRangeSymmetric": False})
        except Exception as exc:  # onnxruntime raises many types here
            raise UserError(f"int8 quantization of {fp32.name} failed ({exc}).",
                            "Use the fp32 model; int8 support depends on the architecture.") from exc
        model = onnx.load_model(str(quantized))
    del model.metadata_props[:]
    for prop in source.metadata_props:
        entry = model.metadata_props.add()
        entry.key, entry.value = prop.key, prop.value
    entry = model.metadata_props.add()
    entry.key, entry.value = "quantization", f"int8 static QDQ, per-channel weights, {len(arrays)} calibration images"
    model.producer_name = source.producer_name
    atomic_write_bytes(target, model.SerializeToString())
    return target


def _float_tail(model) -> list[str]:
    """Nodes kept in float: the output softmax and the classifier that feeds it, and the unfamiliarity score
    back to the pooled features it reads.

    Quantized probabilities would come in steps of 1/255 and no longer sum to one; the classifier
    is a tiny share of the compute, and keeping it in float keeps the logits exact. The score's threshold was
    set on float features; its few matrix products stay float so that the threshold still means the same.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    keep: list[str] = []
    for output in model.graph.output:
        stop_at = ("GlobalAveragePool", "ReduceMean", "Conv") if output.name == UNFAMILIARITY_OUTPUT else \
            ("Gemm", "MatMul", "Conv")
        frontier = [producers[output.name]] if output.name in producers else []
        while frontier:
            node = frontier.pop()
            if node.name in keep:
                continue
            keep.append(node.name)
            if node.op_type in stop_at:
                continue   # the classifier, or the pooled features: stop here
            frontier.extend(producers[i] for i in node.input if i in producers)
    return [n for n in keep if n]


@dataclass(frozen=True)
class ModelFigures:
    """Accuracy and speed of one exported model on the run's held-out images."""

    file: str
    size_bytes: int
    accuracy: float | None
    images: int
    images_per_sec: float


@dataclass(frozen=True)
class Comparison:
    """fp32 versus int8 on the same images."""

    fp32: ModelFigures
    int8: ModelFigures
    agreement: float | None          # share of images where both pick the same class
    max_probability_diff: float | None
    accuracy_change: float | None    # int8 minus fp32, as a fraction (-0.01: one point worse)
    speedup: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _speed(classifier, images: np.ndarray, min_seconds: float = 1.0, batch: int = 16) -> float:
    """Images per second of `predict_arrays` on batches of `batch` (after one warm-up batch)."""
    tile = np.concatenate([images] * (-(-batch // len(images))))[:batch]
    classifier.predict_arrays(tile)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds:
        classifier.predict_arrays(tile)
        done += len(tile)
    return done / (time.perf_counter() - started)


def compare_models(fp32: Path, int8: Path, index: DatasetIndex, threads: int | None = None) -> Comparison:
    """Accuracy of both models on the validation and test images, agreement and speed."""
    from desktop_tl.core.deploy.predict import OnnxClassifier

    models = [OnnxClassifier(Path(p), threads=threads) for p in (fp32, int8)]
    images, labels = _arrays(index, index.split("val") + index.split("test"), models[0].prep)
    if len(images) == 0:
        images, labels = _arrays(index, index.split("train"), models[0].prep, 32)
        labels = np.zeros(0, np.int64)  # training images say nothing about accuracy; speed only
    probs = [np.concatenate([m.predict_arrays(images[i:i + 32]) for i in range(0, len(images), 32)])
             for m in models]
    figures = []
    for model, path, p in zip(models, (fp32, int8), probs):
        accuracy = float((p.argmax(1) == labels).mean()) if len(labels) else None
        figures.append(ModelFigures(Path(path).name, os.path.getsize(path), accuracy, len(labels),
                                    _speed(model, images)))
    agreement = float((probs[0].argmax(1) == probs[1].argmax(1)).mean()) if len(images) else None
    diff = float(np.abs(probs[0] - probs[1]).max()) if len(images) else None
    change = (figures[1].accuracy - figures[0].accuracy) if figures[0].accuracy is not None else None
    return Comparison(figures[0], figures[1], agreement, diff, change,
                      figures[1].images_per_sec / max(figures[0].images_per_sec, 1e-9))


def format_comparison(c: Comparison) -> str:
    """Two lines, one per model, and the verdict figures."""
    def line(f: ModelFigures) -> str:
        acc = "n/a" if f.accuracy is None else f"{f.accuracy:.1%}"
        return (f"  {f.file:<24} {f.size_bytes / 1e6:6.1f} MB  accuracy {acc} on {f.images} val+test images  "
                f"{f.images_per_sec:7.1f} img/s")
    change = "n/a" if c.accuracy_change is None else f"{c.accuracy_change * 100:+.1f} points"
    agree = "n/a" if c.agreement is None else f"{c.agreement:.1%}"
    return "\n".join([line(c.fp32), line(c.int8),
                      f"  int8 vs fp32: accuracy {change}, same class on {agree} of images, "
                      f"speed x{c.speedup:.2f}"])
