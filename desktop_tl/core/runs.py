"""Run folders: everything needed to evaluate, resume or export a run, with relative paths only.

Layout of a run folder:
- `run.json`       settings, classes, status, the plan it trains by (written when training first starts)
                   and the decision rule chosen on validation; the dataset as a path relative to the run folder
- `dataset.json`   the imported index (relative file paths, labels, splits; no patient identifiers)
- `last.safetensors`, `best.safetensors`   checkpoints (see `checkpoint`)
- `metrics.json`   validation and test figures, written once when the run completes
- `model.onnx`, `export.json`   after export
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from desktop_tl.core import checkpoint
from desktop_tl.core.atomic import atomic_write_json
from desktop_tl.core.config import SplitConfig, TrainConfig, from_dict, to_dict
from desktop_tl.core.dataset import DatasetIndex, import_dataset
from desktop_tl.core.decision import Decision
from desktop_tl.core.errors import UserError
from desktop_tl.core.training.plan import Plan

RUN_FILE = "run.json"
DATASET_FILE = "dataset.json"
METRICS_FILE = "metrics.json"


@dataclass
class RunInfo:
    """What a run folder says about itself."""

    run_dir: Path
    config: TrainConfig
    split: SplitConfig
    classes: list[str]
    status: str                 # "created" | "running" | "finished"
    plan: Plan | None = None    # decided when training first starts; kept for resume
    decision: Decision | None = None   # two-class threshold chosen on validation when the run completed

    @property
    def finished(self) -> bool:
        """True once the planned epochs ran (or early stopping ended the run) and test was evaluated."""
        return self.status == "finished"

    @property
    def has_checkpoint(self) -> bool:
        """True when at least one epoch was saved."""
        return (self.run_dir / checkpoint.LAST).is_file()


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
    write_run_info(info)
    return info, index


def write_run_info(info: RunInfo, extra: dict[str, Any] | None = None) -> None:
    """Atomically (re)write `run.json`."""
    payload = {"format": "desktop_tl.run/1", "status": info.status, "classes": info.classes,
               "config": to_dict(info.config), "split": to_dict(info.split)}
    if info.plan is not None:
        payload["plan"] = info.plan.to_dict()
    if info.decision is not None:
        payload["decision"] = info.decision.to_dict()
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
        plan = Plan.from_dict(data["plan"]) if data.get("plan") is not None else None
        info = RunInfo(run_dir, from_dict(TrainConfig, config), from_dict(SplitConfig, data["split"]),
                       classes, status, plan, Decision.from_dict(data.get("decision"), classes))
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
    known = (checkpoint.LAST, checkpoint.BEST, RUN_FILE, DATASET_FILE, METRICS_FILE, "model.onnx", "export.json")
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
