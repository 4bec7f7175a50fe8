"""Run folders: everything needed to evaluate, resume or export a run, with relative paths only.

Layout of a run folder:
- `run.json`       settings, classes, status, the plan it trains by (written when training first starts)
                   and the decision rule chosen on validation; the dataset as a path relative to the run folder
- `dataset.json`   the imported index (relative file paths, labels, splits; no patient identifiers)
- `last.safetensors`, `best.safetensors`   checkpoints (see `checkpoint`)
- `metrics.json`   validation and test figures, written once when the run completes
- `model.onnx`, `export.json`   after export

`RunFolder` answers what a folder holds and what state its run is in by reading JSON only: the window
asks it as the user types a folder name, so this module imports no torch (checkpoints are in `checkpoint`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_tl.core.atomic import atomic_write, atomic_write_json
from desktop_tl.core.config import SplitConfig, TrainConfig, from_dict, to_dict
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.decision import Calibration, Decision, Familiarity, PredictionSets, Referral
from desktop_tl.core.errors import UserError
from desktop_tl.core.label_rules import LabelRules

RUN_FILE = "run.json"
DATASET_FILE = "dataset.json"
METRICS_FILE = "metrics.json"
LAST_CHECKPOINT = "last.safetensors"
BEST_CHECKPOINT = "best.safetensors"
MEMBER_CHECKPOINT = "small_network.safetensors"   # an ensemble's second member while fine-tuning trains the first
MODEL_FILE = "model.onnx"
EXPORT_FILE = "export.json"
DETECTOR_FILE = "unfamiliar_detector.safetensors"   # the statistics of the check for unfamiliar images
START_WEIGHTS = "start_weights.safetensors"   # a copy of the imported weights a run starts from (`imported:ID`)


@dataclass
class RunInfo:
    """What a run folder says about itself."""

    run_dir: Path
    config: TrainConfig
    split: SplitConfig
    classes: list[str]
    status: str                 # "created" | "running" | "interrupted" | "finished"
    plan: dict[str, Any] | None = None   # decided when training first starts, kept for resume (core.training.plan)
    decision: Decision | None = None   # two-class threshold chosen on validation when the run completed
    calibration: Calibration | None = None   # temperature fitted on validation when the run completed
    referral: Referral | None = None     # below this confidence an image is referred to a person
    familiarity: Familiarity | None = None   # above this unfamiliarity score an image is flagged (DETECTOR_FILE)
    prediction_sets: PredictionSets | None = None   # conformal sets of likely classes (more than two classes)
    label_rules: LabelRules | None = None   # multi-label: each label's threshold and temperature (core.label_rules)

    @property
    def finished(self) -> bool:
        """True once the planned epochs ran (or early stopping ended the run) and test was evaluated."""
        return self.status == "finished"

    @property
    def kept_weights(self) -> Path:
        """The run folder's copy of the imported weights it started from (see `keep_start_weights`)."""
        return self.run_dir / START_WEIGHTS

    @property
    def has_checkpoint(self) -> bool:
        """True when at least one epoch was saved."""
        return (self.run_dir / LAST_CHECKPOINT).is_file()


def relative_to_run(run_dir: Path, target: Path) -> str:
    """`target` as a POSIX path relative to the run folder (works across folders with `..`)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(run_dir).resolve())).as_posix()


def create_run(run_dir: Path, data: Path | DatasetIndex, config: TrainConfig, split: SplitConfig,
               progress: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> tuple[RunInfo, DatasetIndex]:
    """Import the data (or take an imported index) and write `run.json` and `dataset.json`."""
    config.validate()
    split.validate()
    run_dir = Path(run_dir)
    index = data if isinstance(data, DatasetIndex) else import_dataset(Path(data), split, progress, should_stop)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / DATASET_FILE, index.to_json(relative_to_run(run_dir, index.source)))
    info = RunInfo(run_dir, config, split, list(index.classes), "created")
    keep_start_weights(info)
    write_run_info(info)
    return info, index


def keep_start_weights(info: RunInfo) -> None:
    """A run that starts from imported weights (`imported:ID`: a weights file the user imported, or the best
    checkpoint of an earlier run for Retrain) keeps a copy of them, so that the folder holds everything it
    needs on another account or machine, whose model store does not have them."""
    if not info.config.weights.startswith("imported:"):
        return
    # imported here: the store needs timm and torch, which the window must not load at its start
    from desktop_tl.core.models.store import find_imported

    stored = find_imported(info.config.model, info.config.weights.removeprefix("imported:"))
    if stored is not None and not info.kept_weights.is_file():
        atomic_write(info.kept_weights, lambda tmp: shutil.copyfile(stored.path, tmp))


def write_run_info(info: RunInfo, extra: dict[str, Any] | None = None) -> None:
    """Atomically (re)write `run.json`."""
    payload = {"format": "desktop_tl.run/1", "status": info.status, "classes": info.classes,
               "config": to_dict(info.config), "split": to_dict(info.split)}
    if info.plan is not None:
        payload["plan"] = info.plan
    if info.decision is not None:
        payload["decision"] = info.decision.to_dict()
    if info.calibration is not None:
        payload["calibration"] = info.calibration.to_dict()
    if info.referral is not None:
        payload["referral"] = info.referral.to_dict()
    if info.familiarity is not None:
        payload["familiarity"] = info.familiarity.to_dict()
    if info.prediction_sets is not None:
        payload["prediction_sets"] = info.prediction_sets.to_dict()
    if info.label_rules is not None:
        payload["label_rules"] = info.label_rules.to_dict()
    payload.update(extra or {})
    atomic_write_json(info.run_dir / RUN_FILE, payload)


def open_run(run_dir: Path) -> RunInfo:
    """Read `run.json`; UserError when the folder holds no run or the file is damaged."""
    run_dir = Path(run_dir)
    data = _read_json(run_dir / RUN_FILE, "run settings")
    try:
        classes = data["classes"]
        status = data["status"]
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes) and isinstance(status, str)):
            raise TypeError
        config = data["config"]
        if isinstance(config, dict) and "recipe" not in config:
            config = dict(config, recipe="custom")   # written before recipes existed: it trained as set
        plan = data.get("plan")
        if plan is not None and not isinstance(plan, dict):
            raise TypeError
        info = RunInfo(run_dir, from_dict(TrainConfig, config), from_dict(SplitConfig, data["split"]),
                       classes, status, plan, Decision.from_dict(data.get("decision"), classes),
                       Calibration.from_dict(data.get("calibration")), Referral.from_dict(data.get("referral")),
                       Familiarity.from_dict(data.get("familiarity")),
                       PredictionSets.from_dict(data.get("prediction_sets")),
                       LabelRules.from_dict(data.get("label_rules"), len(classes)))
    except (KeyError, TypeError) as exc:
        raise UserError(f"{run_dir / RUN_FILE} is incomplete or was edited by hand.",
                        "Train the run again into a new folder.") from exc
    try:
        info.config.validate()  # a hand-edited value (batch size 0, say) must not reach the training loop
        info.split.validate()
    except UserError as exc:
        raise UserError(f"{run_dir / RUN_FILE} holds a setting that cannot work: {exc.what}",
                        "Fix the value in the file, or train the run again into a new folder.") from exc
    return info


def load_index(run_dir: Path, data_root: Path | None = None) -> DatasetIndex:
    """The run's dataset index; `data_root` overrides where the dataset now lives."""
    run_dir = Path(run_dir)
    data = _read_json(run_dir / DATASET_FILE, "dataset index")
    if data_root is not None:
        if not isinstance(data, dict):
            data = {}
        data = dict(data, source=relative_to_run(run_dir, data_root))
    index = DatasetIndex.from_json(data, run_dir)
    if (run_dir / RUN_FILE).is_file() and open_run(run_dir).classes != index.classes:
        raise UserError(f"{run_dir / RUN_FILE} and {run_dir / DATASET_FILE} list different classes "
                        "(one of them was edited or replaced).",
                        "Train the run again into a new folder.")
    return index


def remove_stale_temp_files(run_dir: Path) -> list[str]:
    """Delete the hidden half-written files a killed process left in a run folder; returns their names.

    `atomic_write` writes `.NAME.XXXX.tmp` next to NAME and renames it; a crash before the
    rename leaves the temp file behind, invisible and possibly as large as a checkpoint. Only
    call this when nothing else is writing into the run folder (before training resumes).
    """
    known = (LAST_CHECKPOINT, BEST_CHECKPOINT, MEMBER_CHECKPOINT, DETECTOR_FILE, RUN_FILE, DATASET_FILE, METRICS_FILE,
             MODEL_FILE, EXPORT_FILE)
    removed = []
    for name in known:
        for stale in Path(run_dir).glob(f".{name}.*.tmp"):
            try:
                stale.unlink()
            except OSError:
                continue
            removed.append(stale.name)
    return removed


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise UserError(f"{path.parent} holds no desktop_tl run ({path.name} is missing).",
                        "Give the folder passed as --out to `desktop-tl train`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise UserError(f"The {what} file {path} is damaged ({type(exc).__name__}: {str(exc)[:200]}).",
                        "Train the run again into a new folder.") from exc


class RunFolder:
    """One run folder: what state its run is in and what it holds, each read when asked (JSON only).

    `status()`: "new" (no folder, or an empty one), "created" (settings, no epoch saved yet),
    "interrupted" (epochs saved, not finished), "finished", "damaged" (run.json unreadable or
    inconsistent) or "occupied" (other files, no run).
    """

    STATUSES = ("new", "created", "interrupted", "finished", "damaged", "occupied")
    RESUMABLE = ("created", "interrupted")     # training continues the run there, to its planned total
    WITH_EPOCHS = ("interrupted", "finished")  # checkpoints and history to evaluate, export or open

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({self.path.name!r})"

    @property
    def has_run(self) -> bool:
        """True when the folder holds run settings (run.json)."""
        return (self.path / RUN_FILE).is_file()

    @property
    def has_checkpoint(self) -> bool:
        """True when at least one epoch was saved."""
        return (self.path / LAST_CHECKPOINT).is_file()

    def status(self) -> str:
        """See the class docstring."""
        if not self.path.exists():
            return "new"
        if not self.has_run:
            return "occupied" if not self.path.is_dir() or any(self.path.iterdir()) else "new"
        try:
            info = open_run(self.path)
        except UserError:
            return "damaged"
        if info.finished:
            return "finished"
        return "interrupted" if self.has_checkpoint else "created"

    @property
    def resumable(self) -> bool:
        """True for a run that was created or interrupted and can be (re)started where it stopped."""
        return self.status() in self.RESUMABLE

    def training_start(self, resume: bool) -> str:
        """What training in this folder does, one rule for the CLI and the window: "start" (a new run; the
        settings of a run that never trained are replaced), "resume" (`resume` and a created or interrupted
        run: it continues to its planned total) or "finished" (`resume` and a finished run: nothing to train).
        UserError when no run may train here: other files, damaged settings, or a run that would be
        overwritten."""
        status = self.status()
        if status == "damaged":
            raise UserError(f"The run settings (run.json) in {self.path} are damaged.", "Choose another run folder.")
        if status == "occupied":
            raise UserError(f"{self.path} already holds other files and no run.",
                            "Choose an empty or new folder for the run.")
        if status == "finished" and not resume:
            raise UserError(f"{self.path} already holds a finished run.", "Choose another folder for a new run.")
        if status == "interrupted" and not resume:
            raise UserError(f"{self.path} already holds a run.",
                            "Continue it (Resume in the window, --resume on the command line), or choose another "
                            "folder.")
        if status == "finished":
            return "finished"
        return "resume" if resume and status in self.RESUMABLE else "start"

    @property
    def model_file(self) -> Path:
        """Where `export` writes the run's ONNX model unless told otherwise, and where `predict`, `evaluate`
        and `suggest` look for it."""
        return self.path / MODEL_FILE

    def exported_file(self, onnx_file: str) -> Path:
        """Where an export's model is (`ExportResult.onnx_file`): a bare file name lies in the run folder, a path
        is where the user chose."""
        return self.path / onnx_file if Path(onnx_file).name == onnx_file else Path(onnx_file)

    def exported_model(self) -> Path | None:
        """The model file of the run's last export (export.json names it) when it is there, else None."""
        name = (self.export_record() or {}).get("onnx_file")
        model = self.exported_file(name) if isinstance(name, str) and name else None
        return model if model is not None and model.is_file() else None

    def info(self) -> RunInfo:
        """The run's settings and status (UserError when the folder holds no run or it is damaged)."""
        return open_run(self.path)

    def index(self, data_root: Path | None = None) -> DatasetIndex:
        """The run's dataset index; `data_root` says where the dataset lives now if it moved."""
        return load_index(self.path, data_root)

    def dataset_source(self) -> Path | None:
        """The dataset folder or CSV the run was trained on (from dataset.json, without reading the samples'
        files), or None when that cannot be read."""
        data = _read_optional(self.path / DATASET_FILE)
        source = (data or {}).get("source")
        return (self.path / source).resolve() if isinstance(source, str) and source else None

    def metrics(self) -> dict[str, Any] | None:
        """metrics.json of a finished run, or None (not finished, unreadable)."""
        return _read_optional(self.path / METRICS_FILE)

    def export_record(self) -> dict[str, Any] | None:
        """export.json of the run's last export, or None."""
        return _read_optional(self.path / EXPORT_FILE)

    def history(self) -> list[dict[str, Any]]:
        """The finished epochs (figures per epoch) of the run: from metrics.json once it finished, else from
        the last checkpoint's metadata (read without torch); [] when there is none or it is unreadable."""
        metrics = self.metrics()
        if metrics is not None and isinstance(metrics.get("history"), list):
            return metrics["history"]
        history = self.checkpoint_meta(LAST_CHECKPOINT).get("history")
        return history if isinstance(history, list) else []

    def checkpoint_meta(self, name: str) -> dict[str, Any]:
        """The metadata of one of the run's checkpoints, read without torch (its header only); {} when it is
        absent, damaged or foreign (the engine reports that when it loads the checkpoint)."""
        try:
            from safetensors import safe_open

            with safe_open(str(self.path / name), framework="numpy") as fh:
                meta = json.loads((fh.metadata() or {})["desktop_tl"])
        except Exception:  # noqa: BLE001 - see the docstring
            return {}
        return meta if isinstance(meta, dict) else {}

    def remove_stale_temp_files(self) -> list[str]:
        """See `remove_stale_temp_files`."""
        return remove_stale_temp_files(self.path)


def _read_optional(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when it is absent, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
