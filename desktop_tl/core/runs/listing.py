"""A project's runs at a glance: the run folders it records and those in its runs folder, each with its
status, recipe, date and best figure, read from JSON and the checkpoint's header only (no torch)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.delivered import delivered_model_words
from desktop_tl.core.runs.folder import BEST_CHECKPOINT, DATASET_FILE, RUN_FILE, RunFolder


@dataclass(frozen=True)
class RunSummary:
    """One line of a project's runs list."""

    path: Path
    status: str             # RunFolder.STATUSES, or "missing" for a recorded folder that is gone
    recipe: str             # "auto, efficientnet_lite0"; "" when run.json cannot be read
    created: float | None   # when the run was created (seconds since the epoch), None when unknown
    epochs: int             # epochs saved
    best: str               # the best figure in words ("test accuracy 91.2%"), "" when there is none

    @property
    def resumable(self) -> bool:
        """True for a run that can be started or continued where it stopped."""
        return self.status in RunFolder.RESUMABLE

    @property
    def has_epochs(self) -> bool:
        """True for a run with saved epochs: it can be made the current run (evaluated, exported)."""
        return self.status in RunFolder.WITH_EPOCHS


def _best_figure(folder: RunFolder, history: list[dict]) -> str:
    """Test accuracy of a finished run, else the validation accuracy of the epoch with the lowest loss."""
    test = (folder.metrics() or {}).get("test")
    if isinstance(test, dict) and test.get("images") and isinstance(test.get("accuracy"), (int, float)):
        return f"test accuracy {test['accuracy']:.1%}"
    scored = [row for row in history if isinstance(row, dict) and all(
        isinstance(row.get(key), (int, float)) and math.isfinite(row[key]) for key in ("val_loss", "val_accuracy"))]
    if not scored:
        return ""
    best = min(scored, key=lambda row: row["val_loss"])
    return f"validation accuracy {best['val_accuracy']:.1%} (epoch {best.get('epoch', '?')})"


def _created(path: Path) -> float | None:
    """When the run was created: dataset.json is written once, with the run."""
    for name in (DATASET_FILE, RUN_FILE):
        try:
            return (path / name).stat().st_mtime
        except OSError:
            continue
    return None


def summarize_run(path: Path) -> RunSummary:
    """What the list says about the run folder `path` (never raises for a missing or damaged folder)."""
    path = Path(path)
    if not path.exists():
        return RunSummary(path, "missing", "", None, 0, "")
    folder = RunFolder(path)
    status = folder.status()
    history = folder.history() if status in RunFolder.WITH_EPOCHS else []
    try:
        config = folder.info().config
        scratch = any(isinstance(row, dict) and row.get("stage") == "scratch" for row in history)
        model = "small network trained from scratch" if scratch else config.model
        if status == "finished":
            model = delivered_model_words(folder.checkpoint_meta(BEST_CHECKPOINT), model)
        recipe = f"{config.recipe}, {model}"
    except UserError:
        recipe = ""
    return RunSummary(path, status, recipe, _created(path), len(history), _best_figure(folder, history))


def find_runs(recorded: Iterable[Path], runs_folder: Path | None = None) -> list[RunSummary]:
    """The runs `recorded` (a project's) and the run folders directly in `runs_folder`, each once, newest first
    (missing ones last)."""
    paths: dict[Path, Path] = {}
    for path in recorded:
        paths.setdefault(Path(path).resolve(), Path(path))
    if runs_folder is not None and Path(runs_folder).is_dir():
        try:
            children = sorted(Path(runs_folder).iterdir())
        except OSError:
            children = []
        for child in children:
            if (child / RUN_FILE).is_file():
                paths.setdefault(child.resolve(), child)
    runs = [summarize_run(path) for path in paths.values()]
    return sorted(runs, key=lambda run: -(run.created if run.created is not None else -math.inf))
