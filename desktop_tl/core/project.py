"""Project files (`.dtlproj`): what the window was working on, as JSON with relative paths.

A project records the dataset source, the split, the model and weights, the freeze spec, the
hyperparameters, the run folders and the labels CSV of images confirmed with label assist (absent from files
written before label assist: they load with none). Paths are stored relative to the project file so a project
folder can be moved or shared as a whole. Nothing here imports Qt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_tl.core.atomic import atomic_write_json
from desktop_tl.core.config import SplitConfig, TrainConfig, from_dict, to_dict
from desktop_tl.core.errors import UserError

PROJECT_SUFFIX = ".dtlproj"
PROJECT_FORMAT = "desktop_tl.project/1"
# Settings stored in their own fields rather than among the hyperparameters.
_SELECTION_FIELDS = ("model", "weights", "freeze")


@dataclass
class Project:
    """Everything a project file holds, with absolute paths once loaded."""

    data_source: Path | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    config: TrainConfig = field(default_factory=TrainConfig)
    runs: list[Path] = field(default_factory=list)
    current_run: Path | None = None
    labels_csv: Path | None = None      # labels confirmed with label assist, joined to training (data.confirmed)


def _relative(target: Path, base: Path) -> str:
    """`target` relative to `base` as POSIX text; absolute when no relative path exists (another drive)."""
    try:
        return Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix()
    except ValueError:
        return Path(target).resolve().as_posix()


def _absolute(text: str, base: Path) -> Path:
    path = Path(text)
    return path if path.is_absolute() else (base / path).resolve()


def project_to_json(project: Project, project_file: Path) -> dict[str, Any]:
    """The JSON content of a project saved as `project_file` (paths relative to its folder)."""
    base = Path(project_file).resolve().parent
    hyper = {k: v for k, v in to_dict(project.config).items() if k not in _SELECTION_FIELDS}
    return {
        "format": PROJECT_FORMAT,
        "dataset": {"source": _relative(project.data_source, base) if project.data_source else None},
        "split": to_dict(project.split),
        "model": {"name": project.config.model, "weights": project.config.weights},
        "freeze": project.config.freeze,
        "hyperparameters": hyper,
        "runs": [_relative(r, base) for r in project.runs],
        "current_run": _relative(project.current_run, base) if project.current_run else None,
        "labels_csv": _relative(project.labels_csv, base) if project.labels_csv else None,
    }


def save_project(project_file: Path, project: Project) -> None:
    """Write the project atomically (UserError when the folder is not writable)."""
    atomic_write_json(Path(project_file), project_to_json(project, project_file))


def _damaged(project_file: Path, detail: str) -> UserError:
    return UserError(f"The project file {project_file} is damaged or was edited by hand: {detail}.",
                     "Open another project, or start a new one and import the dataset again.")


def _text_or_none(value: Any, what: str, project_file: Path) -> str | None:
    if isinstance(value, str) and "\0" in value:
        raise _damaged(project_file, f"{what} contains a NUL character")
    if value is None or isinstance(value, str):
        return value
    raise _damaged(project_file, f"{what} should be a path, found {type(value).__name__}")


def project_from_json(data: Any, project_file: Path) -> Project:
    """Build a Project from parsed JSON; UserError for anything missing, misspelt or of the wrong type."""
    project_file = Path(project_file)
    base = project_file.resolve().parent
    if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
        raise UserError(f"{project_file} is not a desktop_tl project (format {PROJECT_FORMAT} expected).",
                        "Choose a .dtlproj file saved by desktop_tl.")
    try:
        dataset, model = data.get("dataset") or {}, data.get("model") or {}
        if not isinstance(dataset, dict) or not isinstance(model, dict):
            raise _damaged(project_file, "'dataset' and 'model' must be objects")
        source = _text_or_none(dataset.get("source"), "dataset source", project_file)
        hyper = data.get("hyperparameters") or {}
        if not isinstance(hyper, dict):
            raise _damaged(project_file, "'hyperparameters' must be an object")
        selection = {k: v for k, v in (("model", model.get("name")), ("weights", model.get("weights")),
                                       ("freeze", data.get("freeze"))) if v is not None}
        config = from_dict(TrainConfig, {**hyper, **selection})
        split = from_dict(SplitConfig, data.get("split") or {})
        runs = data.get("runs") or []
        if not isinstance(runs, list):
            raise _damaged(project_file, "'runs' must be a list of folders")
        run_paths = [_absolute(_text_or_none(r, "run folder", project_file) or ".", base) for r in runs]
        current = _text_or_none(data.get("current_run"), "current run", project_file)
        labels = _text_or_none(data.get("labels_csv"), "labels CSV", project_file)
    except UserError as exc:
        if exc.what.startswith("The project file"):
            raise
        raise UserError(f"The project file {project_file} has a bad value: {exc.what}", exc.hint) from exc
    config.validate()
    split.validate()
    return Project(data_source=_absolute(source, base) if source else None, split=split, config=config,
                   runs=run_paths, current_run=_absolute(current, base) if current else None,
                   labels_csv=_absolute(labels, base) if labels else None)


def load_project(project_file: Path) -> Project:
    """Read a `.dtlproj` file; UserError (never a crash) when it is missing, truncated or hand-edited."""
    project_file = Path(project_file)
    try:
        text = project_file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"The project file {project_file} does not exist.", "Choose another project.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read the project file {project_file}: {exc}.",
                        "Check that the file is readable, or choose another project.") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _damaged(project_file, f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except RecursionError as exc:
        raise _damaged(project_file, "nested too deeply to be a project") from exc
    return project_from_json(data, project_file)


def own_runs_folder(project_file: Path) -> Path:
    """Where a project's new runs go: `NAME.runs/` beside `NAME.dtlproj`, so that projects saved in one folder
    never share runs."""
    return project_file.with_name(f"{project_file.stem}.runs")


def own_labels_file(project_file: Path) -> Path:
    """Where a project's labels confirmed with label assist go: `NAME.confirmed.csv` beside `NAME.dtlproj`, so
    that a label confirmed in one project never joins another's training split."""
    return project_file.with_name(f"{project_file.stem}.confirmed.csv")


def with_suffix(path: Path) -> Path:
    """`path` ending in `.dtlproj` (added when the user typed a bare name)."""
    path = Path(path)
    return path if path.suffix == PROJECT_SUFFIX else path.with_name(path.name + PROJECT_SUFFIX)

