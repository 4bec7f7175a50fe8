"""The main window's project actions: new, open, save and save as, recent projects, and whether quitting
would lose unsaved work. A mixin of `MainWindow`, kept apart so the window module holds the layout, menus and
closing; what it uses of its host is declared on the class (`ProjectActions.state` and the rest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox, QStatusBar

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.confirmed import SHARED_LABELS_FILE, copy_confirmed
from desktop_tl.core.errors import UserError
from desktop_tl.core.project import PROJECT_SUFFIX, Project, load_project, own_labels_file, save_project, with_suffix
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.gui.shell.recent_projects import settings_list

if TYPE_CHECKING:
    from desktop_tl.gui.dataset.dataset_panel import DatasetImportPanel
    from desktop_tl.gui.shell.recent_projects import RecentProjects
    from desktop_tl.gui.state import AppState
    from desktop_tl.gui.training.training_monitor import TrainingMonitor
    from desktop_tl.gui.worker import EngineController


class ProjectActions:
    """Project files for `MainWindow` (see the module docstring)."""

    # What the host window provides (MainWindow sets each in its __init__):
    state: AppState
    controller: EngineController
    dataset_panel: DatasetImportPanel
    training_monitor: TrainingMonitor
    recent: RecentProjects
    _saved_project: Project | None           # the project as last saved or opened; None: never saved
    project_file: Path | None                # a property of the window, kept in `state`
    show_error: Callable[..., None]           # (what, hint="") in a message box
    statusBar: Callable[[], QStatusBar]      # noqa: N815 (QMainWindow's)
    _update_title: Callable[[], None]

    # -- recent projects -------------------------------------------------------------------------------
    def recent_projects(self) -> list[Path]:
        """Recently opened or saved project files, newest first."""
        return self.recent.paths()

    def _remember_project(self, path: Path) -> None:
        self.recent.remember(path)

    def _fill_recent_menu(self) -> None:
        self.recent.fill()

    # -- projects --------------------------------------------------------------------------------------
    def _refuse_while_busy(self, action: str) -> bool:
        if self.controller.busy:
            self.show_error(f"Cannot {action} while a task is running.",
                            "Wait for it to finish or stop it in the Training panel.")
            return True
        return False

    @Slot()
    def new_project(self) -> None:
        """Start over: no dataset, default model and settings, no runs (unsaved work is offered a save first)."""
        if self._refuse_while_busy("start a new project") or not self.settle_unsaved_work("starting a new project"):
            return
        self.project_file = None
        self.state.set_split(SplitConfig())
        self.state.set_config(TrainConfig())
        self.state.set_dataset(None)
        self.state.set_run(None)
        self.state.set_runs([])
        self.state.set_metrics(None)
        self.state.set_labels_csv(None)
        self.training_monitor.reset()
        self._saved_project = None
        self._update_title()

    def current_project(self) -> Project:
        """The window's state as a Project (paths absolute); a run being trained counts as the current run."""
        runs = [Path(r) for r in self.state.runs]
        current = self.state.run_dir
        training = self.training_monitor.active_run
        if training is not None:
            current = Path(training)
            runs += [current] if current not in runs else []
        return Project(data_source=self.state.data_source, split=self.state.split, config=self.state.config,
                       runs=runs, current_run=current, labels_csv=self.state.labels_csv)

    def save_project(self, path: Path | None = None, project: Project | None = None) -> bool:
        """Save `project` (the window's current one unless given) to `path` (or the current project file, else
        ask); False when nothing was saved."""
        target = Path(path) if path else self.project_file
        if target is None:
            return self.save_project_as(project=project)
        target = with_suffix(target)
        project = project or self.current_project()
        try:
            save_project(target, project)
        except UserError as exc:
            self.show_error(exc.what, exc.hint)
            return False
        self.project_file = target
        self._saved_project = project
        self._remember_project(target)
        self._update_title()
        self.statusBar().showMessage(f"Saved {target}", 5000)
        return True

    def save_project_as(self, path: Path | None = None, project: Project | None = None) -> bool:
        """Ask where to save (unless `path` is given), then save `project` (the current one unless given)."""
        if path is None:
            start = str(self.project_file or Path.home() / f"project{PROJECT_SUFFIX}")
            chosen, _ = QFileDialog.getSaveFileName(self, "Save project", start,
                                                    f"desktop_tl projects (*{PROJECT_SUFFIX})")
            if not chosen:
                return False
            path = Path(chosen)
        return self.save_project(path, project)

    def open_project(self, path: Path | None = None) -> bool:
        """Open a project file (asking for one when `path` is None); a damaged file is refused with a message."""
        if self._refuse_while_busy("open a project") or not self.settle_unsaved_work("opening another project"):
            return False
        if path is None:
            start = str(self.project_file.parent if self.project_file else Path.home())
            chosen, _ = QFileDialog.getOpenFileName(self, "Open project", start,
                                                    f"desktop_tl projects (*{PROJECT_SUFFIX});;All files (*)")
            if not chosen:
                return False
            path = Path(chosen)
        path = Path(path)
        try:
            project = load_project(path)
        except UserError as exc:
            self.show_error(exc.what, exc.hint, title="Cannot open the project")
            return False
        self.project_file = path
        self._apply_project(project)
        self._saved_project = self.current_project()
        self._remember_project(path)
        self._offer_own_labels_file(path, project.labels_csv)
        self._update_title()
        return True

    def _offer_own_labels_file(self, path: Path, labels_csv: Path | None) -> None:
        """A project saved by an earlier version keeps its confirmed labels in `confirmed_labels.csv`, which every
        project saved in its folder wrote to: offer, once per project, to give it its own copy from now on (the
        shared file stays as it is, for the other projects). Accepted, the project file is updated to name the copy;
        the copy holds the same images, so the dataset being imported needs no second import."""
        if labels_csv is None or labels_csv.name != SHARED_LABELS_FILE or not labels_csv.is_file():
            return
        settings, key = self.recent.settings(), "sharedLabelsKept"
        kept = settings_list(settings, key)
        if str(path.resolve()) in kept:
            return
        own = own_labels_file(path)
        if not self.ask_own_labels_file(labels_csv, own):
            settings.setValue(key, kept + [str(path.resolve())])
            return
        try:
            copied = copy_confirmed(labels_csv, own)
            save_project(path, replace(load_project(path), labels_csv=own))     # only that line of the file changes
        except (UserError, OSError) as exc:
            what, hint = (exc.what, exc.hint) if isinstance(exc, UserError) else (str(exc), "Check the folder.")
            self.show_error(f"Could not give the project its own confirmed labels: {what}", hint)
            return
        self.state.set_labels_csv(own)
        self._saved_project = replace(self._saved_project, labels_csv=own)
        self.statusBar().showMessage(f"{own.name} now holds this project's {copied} confirmed labels", 8000)

    def ask_own_labels_file(self, shared: Path, own: Path) -> bool:
        """Ask whether an earlier version's shared labels file should become this project's own copy (tests
        replace this)."""
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self, "Give this project its own confirmed labels?",
            f"This project keeps the labels you confirmed with label assist in {shared.name}, a file that every "
            f"project saved in the same folder wrote to, so labels confirmed in another project may be in it. "
            f"Copy it to {own.name} and use that file for this project from now on?\n\nThe shared file stays "
            f"as it is. Check the copy's labels in Review labels if other projects used the same folder.",
            buttons.Yes | buttons.No, buttons.Yes)
        return answer == buttons.Yes

    def _apply_project(self, project: Project) -> None:
        self.state.set_split(project.split)
        self.state.set_config(project.config)
        self.state.set_dataset(None)
        self.state.set_runs([str(r) for r in project.runs])
        self.state.set_run(project.current_run if project.current_run and project.current_run.is_dir() else None)
        self.state.set_metrics(RunFolder(self.state.run_dir).metrics() if self.state.run_dir else None)
        self.state.set_labels_csv(project.labels_csv)    # before the import below, which joins its labels
        self.training_monitor.show_run(self.state.run_dir)
        missing = []
        if project.data_source is not None:
            if project.data_source.exists():
                self.dataset_panel.import_path(project.data_source)
            else:
                missing.append(f"the dataset {project.data_source}")
        if project.current_run is not None and self.state.run_dir is None:
            missing.append(f"the run folder {project.current_run}")
        if missing:
            self.show_error(f"The project opened, but {' and '.join(missing)} could not be found.",
                            "Import the dataset again (drop its folder on the window); moved folders can be "
                            "found again if you keep them next to the project file.",
                            title="Some files are missing")

    def has_unsaved_changes(self, project: Project | None = None) -> bool:
        """True when `project` (the window's current one unless given) holds something a project file does not:
        a dataset or run never saved, or a change since the project was saved or opened."""
        project = project or self.current_project()
        if self._saved_project is None:
            return project.data_source is not None or bool(project.runs)
        return project != self._saved_project

    def settle_unsaved_work(self, before: str, project: Project | None = None) -> bool:
        """Before `before` ("quitting", "opening another project"...) discards `project` (the current one unless
        given), offer to save it if it holds unsaved work; False when the user cancelled or the save did not
        happen, True to go on."""
        project = project or self.current_project()
        if not self.has_unsaved_changes(project):
            return True
        answer = self.ask_save_changes(before)
        return answer == "discard" or (answer == "save" and self.save_project(project=project))

    def ask_save_changes(self, before: str = "quitting") -> str:
        """Ask whether to save the project before `before`: "save", "discard" or "cancel" (tests replace this)."""
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self, "Save the project?",
            f"Save the project before {before}? It records the dataset, the settings and the runs "
            "(an interrupted run can then be resumed from it).",
            buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        return {buttons.Save: "save", buttons.Discard: "discard"}.get(answer, "cancel")
