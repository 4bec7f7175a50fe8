"""ONNX export of a run's checkpoint, with metadata and a PyTorch-vs-onnxruntime parity check."""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.onnx import symbolic_helper

from desktop_tl.core.atomic import atomic_write_bytes, atomic_write_json, ensure_writable
from desktop_tl.core.data.imageio import ImageLoadError, load_image
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.data.preprocess import Preprocessing, preprocess
from desktop_tl.core.decision import (
    ANSWERED,
    STATUS_RULES_KEY,
    UNCERTAIN,
    UNFAMILIAR,
    UNFAMILIARITY_OUTPUT,
    Calibration,
    Decision,
    Familiarity,
    PredictionSets,
    Referral,
)
from desktop_tl.core.deploy.heatmaps import CAM_OUTPUT
from desktop_tl.core.deploy.promise import PROMISE_KEY, held_out_counts
from desktop_tl.core.errors import UserError
from desktop_tl.core.label_rules import MULTI_LABEL, LabelRules
from desktop_tl.core.models.ensemble import Ensemble
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.models.familiarity import UnfamiliarityScore, feature_network, pooled_features
from desktop_tl.core.runs.detector_file import load_detector
from desktop_tl.core.runs.folder import DETECTOR_FILE, EXPORT_FILE, MODEL_FILE, RunFolder, RunInfo, load_index, open_run
from desktop_tl.core.runs.trained import model_from_checkpoint

OPSET = 18
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how closely onnxruntime matches PyTorch."""

    onnx_file: str                 # file name, or the path the user chose
    size_bytes: int
    opset: int
    parity_max_abs_diff: dict[str, float]   # {"batch_1": ..., "batch_7": ...}
    parity_ok: bool
    metadata: dict[str, str]


class _WithSoftmax(nn.Module):
    """The model with its calibrated softmax: probabilities = softmax(logits / temperature); with `cam`, also
    the class activation maps: the classifier's weights applied at every position of the last feature map
    (CAM, Zhou et al. 2016), which for a global-average-pool + linear head is exactly what each position adds
    to each class's logit. `predict` turns them into heat maps with numpy alone. With `score`, last, each
    image's unfamiliarity from the pooled features of `features_from` (core.models.familiarity)."""

    def __init__(self, model: nn.Module, temperature: float = 1.0, cam: bool = False,
                 score: UnfamiliarityScore | None = None, features_from: nn.Module | None = None,
                 label_rules: LabelRules | None = None) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        # a multi-label model: one sigmoid per label, each with its own temperature
        self.label_temperatures = (None if label_rules is None else
                                   torch.tensor(label_rules.temperatures, dtype=torch.float32))
        self.cam = cam
        self.score = score
        # decided here, not in forward: under torch.export `features_from is model` does not hold, and the
        # model would be traced twice (twice the export time)
        self.reads_own_features = features_from is model
        members = list(model.members) if isinstance(model, Ensemble) else []
        self.feature_member = next((k for k, m in enumerate(members) if m is features_from), None)
        own = self.reads_own_features or self.feature_member is not None
        self.features_from = None if own else features_from

    def forward(self, images: torch.Tensor):
        if isinstance(self.model, Ensemble):  # maps and features from the one pass of each member
            probabilities, maps, pooled = self.model.outputs(images, maps=self.cam, features_of=self.feature_member)
            outputs = (self._softmax(torch.log(probabilities.clamp_min(1e-12))),) + ((maps,) if self.cam else ())
            if self.score is not None and self.feature_member is None:
                pooled = pooled_features(self.features_from, images)
        else:                 # one pass through the model's layers gives every output
            features = self.model.forward_features(images)
            outputs = (self._softmax(self.model.forward_head(features)),)
            if self.cam:
                outputs += (torch.einsum("kc,nchw->nkhw", self.model.get_classifier().weight, features),)
            if self.score is not None:
                pooled = (self.model.forward_head(features, pre_logits=True).flatten(1).float()
                          if self.reads_own_features else pooled_features(self.features_from, images))
        if self.score is not None:
            outputs += (self.score(pooled),)
        return outputs[0] if len(outputs) == 1 else outputs

    def _softmax(self, logits: torch.Tensor) -> torch.Tensor:
        if self.label_temperatures is not None:
            return torch.sigmoid(logits.float() / self.label_temperatures)
        return torch.softmax(logits.float() / self.temperature, dim=1)


def supports_cam(model: nn.Module) -> bool:
    """True when the model's head is a global average pool and a linear layer, checked by running it: its
    logits must equal the linear layer applied to the mean of the last feature map. An ensemble has them when
    every member has and their maps have one size (several small networks); its map is their average."""
    if isinstance(model, Ensemble):
        if not all(supports_cam(m) for m in model.members):
            return False
        with torch.no_grad():
            images = torch.zeros(1, 3, 64, 64)
            return len({tuple(m.forward_features(images).shape[-2:]) for m in model.members}) == 1
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(classifier, nn.Linear) or not hasattr(model, "forward_features"):
        return False
    model.eval()
    with torch.no_grad():
        images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        features = model.forward_features(images)
        if features.ndim != 4:
            return False
        pooled = classifier(features.mean(dim=(2, 3)))
        return bool(torch.allclose(model.forward_head(features), pooled, atol=1e-4, rtol=1e-4))


def onnx_metadata(meta: dict[str, Any], decision: Decision | None = None,
                  calibration: Calibration | None = None, referral: Referral | None = None,
                  familiarity: Familiarity | None = None,
                  prediction_sets: PredictionSets | None = None, label_rules: LabelRules | None = None
                  ) -> dict[str, str]:
    """metadata_props of an exported model: preprocessing, classes, the decision rule (a two-class threshold
    chosen on validation; absent: the most probable class), the calibration (already folded into the
    graph's softmax; recorded to say so), the referral rule and the threshold of the graph's unfamiliarity
    output (absent: every image is answered), provenance; never paths."""
    prep = meta["preprocessing"]
    history = meta.get("history") or []
    best = next((h for h in history if h["epoch"] == meta.get("best_epoch")), None)
    config = meta["config"]
    summary = {"epochs": meta.get("epoch"), "best_epoch": meta.get("best_epoch"),
               "recipe": config.get("recipe", "custom"), "val_accuracy": best["val_accuracy"] if best else None}
    if summary["recipe"] == "custom":
        summary.update(freeze=config["freeze"], augment=config["augment"])
    extra = {"decision": json.dumps(decision.to_dict())} if decision is not None else {}
    if calibration is not None:
        extra["calibration"] = json.dumps(calibration.to_dict())
    if referral is not None:
        extra["referral"] = json.dumps(referral.to_dict())
    if familiarity is not None:
        extra["familiarity"] = json.dumps(familiarity.to_dict())
    if prediction_sets is not None:
        extra["prediction_sets"] = json.dumps(prediction_sets.to_dict())
    if label_rules is not None:       # several labels per image: sigmoid outputs, each label's threshold
        extra.update(task=MULTI_LABEL, label_rules=json.dumps(label_rules.to_dict()))
    # the statuses this model can give: present even when it answers every image, so that `predict` can tell a
    # run without the rules (referral off, too few images) from a model exported before they existed
    extra[STATUS_RULES_KEY] = json.dumps([ANSWERED] + ([UNCERTAIN] if referral else []) +
                                         ([UNFAMILIAR] if familiarity else []))
    if meta.get("members"):       # an ensemble: what it averages (it carries no heat maps)
        extra["members"] = json.dumps([m["arch"] for m in meta["members"]])
        extra["views"] = json.dumps(meta.get("views", ["identity"]))
    return extra | {
        "classes": json.dumps(meta["classes"]),
        "mean": json.dumps(prep["mean"]),
        "std": json.dumps(prep["std"]),
        "input_size": json.dumps(prep["input_size"]),
        "interpolation": prep["interpolation"],
        "crop_pct": json.dumps(prep["crop_pct"]),
        "arch": meta["arch"],
        "weights": meta["weights"]["id"] if isinstance(meta.get("weights"), dict) else str(meta.get("weights")),
        "training": json.dumps(summary),
        "producer": "desktop_tl",
    }


def parity_images(index: DatasetIndex | None, prep: Preprocessing, count: int = 7) -> np.ndarray:
    """`count` real preprocessed images from validation (then train); repeats when there are fewer."""
    arrays: list[np.ndarray] = []
    if index is not None:
        for sample in index.split("val") + index.split("train"):
            if len(arrays) == count:
                break
            try:
                arrays.append(preprocess(load_image(index.abs_path(sample)), prep))
            except (ImageLoadError, OSError):
                continue
    if not arrays:
        raise UserError("No image of the run's dataset could be read for the parity check.",
                        "Make sure the dataset folder is still next to the run, or pass --data.")
    while len(arrays) < count:
        arrays.append(arrays[len(arrays) % len(arrays)])
    return np.stack(arrays).astype(np.float32)


def export_onnx(run_dir: Path, out: Path | None = None, which: str = "best",
                data_root: Path | None = None) -> ExportResult:
    """Export the run's model to one self-contained ONNX file and check parity on real images."""
    import onnx
    import onnxruntime as ort

    run_dir = Path(run_dir)
    model, meta = model_from_checkpoint(run_dir, which)
    info = open_run(run_dir)
    decision, calibration = info.decision, info.calibration
    prep = Preprocessing.from_dict(meta["preprocessing"])
    try:
        index = load_index(run_dir, data_root)
    except UserError:
        index = None
    images = parity_images(index, prep)  # first: no slow export, and no model file, when this fails
    target = Path(out) if out else run_dir / MODEL_FILE
    ensure_writable(target.parent, target.name)
    cam = supports_cam(model)
    score, features_from, familiarity = _unfamiliarity_check(info, model, meta)
    wrapped = _WithSoftmax(model, calibration.temperature if calibration else 1.0, cam, score, features_from,
                           info.label_rules).eval()
    output_names = ["probabilities"] + ([CAM_OUTPUT] if cam else []) + ([UNFAMILIARITY_OUTPUT] if score else [])
    height, width = prep.input_size
    example = torch.zeros(2, 3, height, width)
    proto = onnx.load_model_from_string(_traced_onnx(wrapped, example, output_names))
    _scrub_debug_info(proto)
    metadata = onnx_metadata(meta, decision, calibration, info.referral, familiarity, info.prediction_sets,
                             info.label_rules)
    promised = held_out_counts(RunFolder(run_dir).metrics(), meta["classes"], decision) \
        if which == "best" and info.label_rules is None else None
    if promised is not None:
        metadata[PROMISE_KEY] = json.dumps(promised)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "desktop_tl"
    payload = proto.SerializeToString()
    onnx.checker.check_model(onnx.load_model_from_string(payload))
    session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
    diffs = {}
    with torch.no_grad():
        for batch in (1, 7):
            reference = wrapped(torch.from_numpy(images[:batch]))
            reference = reference if isinstance(reference, tuple) else (reference,)
            got = dict(zip(output_names, session.run(None, {"input": images[:batch]}), strict=True))
            diffs[f"batch_{batch}"] = float(np.abs(reference[0].numpy() - got["probabilities"]).max())
            if score is not None:     # a distance: compared relative to its size
                expected = reference[-1].numpy()
                diffs[f"unfamiliarity_batch_{batch}"] = float(
                    (np.abs(expected - got[UNFAMILIARITY_OUTPUT]) / np.maximum(1.0, np.abs(expected))).max())
    atomic_write_bytes(target, payload)
    result = ExportResult(target.name if target.parent == run_dir else str(target), len(payload), OPSET, diffs,
                          all(d <= PARITY_TOLERANCE for d in diffs.values()), metadata)
    atomic_write_json(run_dir / EXPORT_FILE, dict(asdict(result), onnx_file=target.name))
    return result


def _unfamiliarity_check(info: RunInfo, model: nn.Module, meta: dict[str, Any]
                         ) -> tuple[UnfamiliarityScore | None, nn.Module | None, Familiarity | None]:
    """The score, the network whose features it reads and the rule, from the run's detector file; nothing for a
    run finished before the check existed (its model answers every image)."""
    path = info.run_dir / DETECTOR_FILE
    if info.familiarity is None or not path.is_file():
        return None, None, None
    detector, detector_meta = load_detector(
        path, lambda m: create_model(m["beside_arch"], "none", len(info.classes))[0])
    if detector_meta.get("classes") != meta["classes"]:
        raise UserError(f"The run's {DETECTOR_FILE} belongs to other classes than its model.",
                        f"Train the run again, or delete {DETECTOR_FILE} to export without the check for "
                        "unfamiliar images.")
    try:
        network = feature_network(model, detector_meta.get("features_from", ""), detector.beside)
    except (ValueError, IndexError) as exc:
        raise UserError(f"The run's {DETECTOR_FILE} does not match its model.",
                        f"Train the run again, or delete {DETECTOR_FILE} to export without the check for "
                        "unfamiliar images.") from exc
    return detector.score, network.eval(), info.familiarity


def _traced_onnx(wrapped: nn.Module, example: torch.Tensor, output_names: list[str]) -> bytes:
    """The model as ONNX bytes, batch size left free, by torch's tracing exporter.

    Tracing (`dynamo=False`) rather than torch.export: the graphs here are fixed feed-forward networks with
    no data-dependent control flow, which tracing records exactly, and it writes EfficientNet-Lite0 with its
    heat maps and unfamiliarity score in 0.5 s where torch.export takes 9.4 s (benchmarks/bench_export.py). Parity with PyTorch is checked on real
    images after every export either way."""
    torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", _antialiased_resize, OPSET)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the tracer's notes on Python values it records as constants
        torch.onnx.export(wrapped, (example,), buffer, input_names=["input"], output_names=output_names,
                          dynamic_axes={name: {0: "batch"} for name in ["input", *output_names]},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return buffer.getvalue()


def _antialiased_resize(g, images, output_size, align_corners, scales_h=None, scales_w=None):
    """ONNX for `interpolate(..., mode="bilinear", antialias=True)` (the small network's input shrink), which the
    tracing exporter lacks: Resize with antialias (opset 18), out-of-image samples dropped as PyTorch does."""
    height, width = symbolic_helper._maybe_get_const(output_size, "is")
    batch_channels = g.op("Slice", g.op("Shape", images), g.op("Constant", value_t=torch.tensor([0])),
                          g.op("Constant", value_t=torch.tensor([2])))
    sizes = g.op("Concat", batch_channels, g.op("Constant", value_t=torch.tensor([height, width])), axis_i=0)
    empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    return g.op("Resize", images, empty, empty, sizes, mode_s="linear", antialias_i=1, exclude_outside_i=1,
                coordinate_transformation_mode_s="align_corners" if symbolic_helper._maybe_get_const(
                    align_corners, "b") else "half_pixel")


def _scrub_debug_info(proto) -> None:
    """Drop the exporter's debug annotations: stack traces carry absolute source paths."""
    graphs = [proto.graph]
    while graphs:
        graph = graphs.pop()
        del graph.metadata_props[:]
        graph.doc_string = ""
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
    for function in proto.functions:
        del function.metadata_props[:]
        function.doc_string = ""
        for node in function.node:
            del node.metadata_props[:]
            node.doc_string = ""
    del proto.metadata_props[:]
    proto.doc_string = ""
