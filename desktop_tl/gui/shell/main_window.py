"""The main window: dockable panels around one AppState and one engine worker, menus, projects.

The window only arranges panels and handles what belongs to no panel: project files, recent
projects, drag and drop, the saved layout, and closing safely while a job runs. Panels talk
to each other through `AppState`, never directly.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QEventLoop, QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow, QMenu, QMessageBox, QWidget

from desktop_tl import __version__ as _package_version
from desktop_tl.core.errors import UserError
from desktop_tl.core.project import PROJECT_SUFFIX, Project
from desktop_tl.core.reporting import counted
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.gui.dataset import dataset_panel
from desktop_tl.gui.dataset.augmentation_preview import PREVIEW_JOB
from desktop_tl.gui.dataset.dataset_panel import DatasetImportPanel
from desktop_tl.gui.evaluation.evaluation_panel import EVALUATE_JOB, EvaluationPanel
from desktop_tl.gui.export.export_panel import EXPORT_JOB, PREDICT_JOB, ExportPanel
from desktop_tl.gui.layers.freeze_tree import FreezeTree
from desktop_tl.gui.models import model_browser
from desktop_tl.gui.models.model_browser import ModelBrowser
from desktop_tl.gui.monitor.monitor_jobs import WATCH_JOB
from desktop_tl.gui.monitor.monitor_panel import MonitorPanel
from desktop_tl.gui.shell.dock_layout import (
    MINIMUM_WINDOW_SIZE,
    arrange_docks,
    default_window_size,
    share_default_sizes,
)
from desktop_tl.gui.shell.engine_loader import engine_loaded, start_engine_import
from desktop_tl.gui.shell.help_texts import GETTING_STARTED, about_text
from desktop_tl.gui.shell.label_assist_mount import mount_label_assist
from desktop_tl.gui.shell.project_actions import ProjectActions
from desktop_tl.gui.shell.recent_projects import RecentProjects
from desktop_tl.gui.state import AppState
from desktop_tl.gui.training.training_jobs import TRAIN_JOB
from desktop_tl.gui.training.training_monitor import TrainingMonitor
from desktop_tl.gui.worker import EngineController

ORGANISATION = "desktop_tl"
APPLICATION = "desktop-tl"
DATASET_FILE_SUFFIXES = (".csv", ".tsv", ".txt")
_LAYOUT_VERSION = 2          # 2: the Monitor dock


def app_settings() -> QSettings:
    """The app's settings file (INI in the user's config folder; tests redirect it with QSettings.setPath)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION)


JOB_NAMES = {TRAIN_JOB: "Training", dataset_panel.IMPORT_JOB: "The dataset import", EXPORT_JOB: "The export",
             PREDICT_JOB: "Try it", EVALUATE_JOB: "The evaluation", model_browser.IMPORT_JOB: "The weights import",
             PREVIEW_JOB: "The augmentation preview", WATCH_JOB: "The watch (Monitor panel)"}
STOP_CONSEQUENCES = {TRAIN_JOB: "Training keeps its last finished epoch; you can resume it later. ",
                     dataset_panel.IMPORT_JOB: "The project keeps the dataset it had before this import. ",
                     EXPORT_JOB: "The run keeps its checkpoints; export it again later. ",
                     WATCH_JOB: "The log keeps every image logged so far; start the watch again to go on. "}
"""What stopping each kind of job on quitting keeps, in the question that asks."""
class MainWindow(ProjectActions, QMainWindow):
    """Dockable panels: models, dataset, layers, training, evaluation, export."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(MINIMUM_WINDOW_SIZE)
        self.setObjectName("mainWindow")
        self.setWindowTitle("desktop_tl")
        self.setDockNestingEnabled(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowNestedDocks
                            | QMainWindow.DockOption.AllowTabbedDocks)
        self.setAcceptDrops(True)
        self._saved_project: Project | None = None     # as last saved or opened; None: never saved
        self.state = AppState(self)
        self.controller = EngineController(self)

        self.dataset_panel = DatasetImportPanel(self.state, self.controller)
        # The catalog, the layer tree and the device list need torch/timm: filled after the window shows.
        self.model_browser = ModelBrowser(self.state, self.controller, load=False)
        self.freeze_tree = FreezeTree(self.state, self.controller, build=False)
        self.training_monitor = TrainingMonitor(self.state, self.controller, detect=False)
        self.model_browser.sig_catalog_refreshed.connect(lambda _rows: self.freeze_tree.ensure_built())
        self._engine_views_filled = False
        self._engine_poll = QTimer(self, interval=50)
        self._engine_poll.timeout.connect(self._poll_engine)
        self.evaluation_panel = EvaluationPanel(self.state, self.controller)
        self.export_panel = ExportPanel(self.state, self.controller)
        self.monitor_panel = MonitorPanel(self.state, self.controller)
        self.docks: dict[str, QDockWidget] = arrange_docks(
            self, self.dataset_panel, self.model_browser, self.freeze_tree, self.training_monitor,
            self.evaluation_panel, self.export_panel, self.monitor_panel)
        self._default_layout = self.saveState(_LAYOUT_VERSION)
        self._layout_restored = False
        self._shown_once = False

        self.status_label = QLabel()
        self.statusBar().addPermanentWidget(self.status_label)
        self._build_menus()
        self.state.sig_dataset_changed.connect(lambda _index: self._note_results_of_another_dataset())
        for signal in (self.state.sig_dataset_changed, self.state.sig_model_changed, self.state.sig_freeze_changed,
                       self.state.sig_run_changed):
            signal.connect(self._update_status)
        self.controller.sig_busy_changed.connect(self._update_status)
        self.state.sig_metrics_changed.connect(self._show_results)
        self.label_assist = mount_label_assist(self.dataset_panel)
        self.label_assist.sig_train_requested.connect(self.retrain)
        self.training_monitor.sig_open_run.connect(self.show_run)
        self._update_status()
        self._update_title()
        self._restore_settings()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if not self._layout_restored:
                share_default_sizes(self, self.docks)
            self.model_browser.search.setFocus()     # rather than the first spin box of the dataset panel
            start_engine_import()
            self._engine_poll.start()

    @Slot()
    def _poll_engine(self) -> None:
        if engine_loaded.is_set():
            self.fill_engine_views()

    def fill_engine_views(self) -> None:
        """List the models, build the layer tree and detect the devices (imports torch and timm if needed)."""
        self._engine_poll.stop()
        if self._engine_views_filled:
            return
        self._engine_views_filled = True
        self.model_browser.ensure_loaded()
        self.freeze_tree.ensure_built()
        self.training_monitor.refresh_devices()

    @Slot()
    def reset_layout(self) -> None:
        """Put every panel back where it started."""
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.show()
        self.restoreState(self._default_layout, _LAYOUT_VERSION)
        share_default_sizes(self, self.docks)

    # -- menus ---------------------------------------------------------------------------------------
    def _action(self, menu: QMenu, text: str, slot, shortcut: QKeySequence | str | None = None) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&New project", self.new_project, QKeySequence.StandardKey.New)
        self._action(file_menu, "&Open project…", lambda: self.open_project(), QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.setObjectName("recentMenu")
        self.recent = RecentProjects(self.recent_menu, app_settings, self.open_project)
        file_menu.addSeparator()
        self._action(file_menu, "&Save project", lambda: self.save_project(), QKeySequence.StandardKey.Save)
        self._action(file_menu, "Save project &as…", lambda: self.save_project_as(),
                     QKeySequence.StandardKey.SaveAs)
        file_menu.addSeparator()
        self._action(file_menu, "&Import dataset folder…", self._choose_dataset_folder, "Ctrl+I")
        self._action(file_menu, "Export &report…", lambda: self.evaluation_panel.export_report())
        self._action(file_menu, "R&uns of this project…", self.training_monitor.show_runs)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        view_menu = self.menuBar().addMenu("&View")
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        self._action(view_menu, "&Reset layout", self.reset_layout)

        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Getting started", self.show_getting_started, QKeySequence.StandardKey.HelpContents)
        self._action(help_menu, "&About desktop_tl", self.show_about)

    @Slot()
    def show_getting_started(self) -> None:
        """Help > Getting started: the first hour in six steps (offline, no browser needed)."""
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Getting started", GETTING_STARTED, QMessageBox.StandardButton.Ok,
                          self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.exec()

    @Slot()
    def show_about(self) -> None:
        """Help > About."""
        QMessageBox.about(self, "About desktop_tl", about_text(_package_version))

    def show_run(self, run_dir: Path) -> None:
        """Make a finished run current: its dataset, evaluation and export panels fill in."""
        try:
            self.state.set_dataset(RunFolder(run_dir).index())
        except UserError as exc:
            self.show_error(exc.what, exc.hint)
        self.state.set_run(run_dir)
        self.state.set_metrics(RunFolder(run_dir).metrics())
        self.training_monitor.show_run(run_dir)

    @property
    def project_file(self) -> Path | None:
        """The project file once saved or opened, else None (AppState holds it, so the panels see it too)."""
        return self.state.project_file

    @project_file.setter
    def project_file(self, path: Path | None) -> None:
        self.state.set_project_file(Path(path) if path is not None else None)

    def _update_title(self) -> None:
        name = self.project_file.stem if self.project_file else "untitled project"
        self.setWindowTitle(f"{name} — desktop_tl")

    # -- dataset by menu or drag and drop ------------------------------------------------------------
    @Slot()
    def _choose_dataset_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder (one subfolder per class)", str(Path.home()))
        if folder:
            self.import_dataset(Path(folder))

    def retrain(self) -> bool:
        """Label assist's Retrain: a new run (a fresh folder) with the dataset and settings label assist
        just put in the state, shown in the Training panel."""
        self.training_monitor.set_run_dir(None)
        self.docks[self.training_monitor.objectName()].raise_()
        return self.training_monitor.start()

    def import_dataset(self, path: Path) -> None:
        """Hand a folder (or CSV list) to the dataset panel and bring that panel to the front."""
        self.docks[self.dataset_panel.objectName()].raise_()
        self.dataset_panel.import_path(Path(path))

    @staticmethod
    def dropped_path(event: QDragEnterEvent | QDropEvent) -> Path | None:
        """The local folder, CSV list or project file being dragged, if any."""
        mime = event.mimeData()
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if not url.isLocalFile():
                continue
            path = Path(url.toLocalFile())
            if path.is_dir() or path.suffix.lower() in DATASET_FILE_SUFFIXES + (PROJECT_SUFFIX,):
                return path
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.dropped_path(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self.dropped_path(event)
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        if path.suffix.lower() == PROJECT_SUFFIX:
            self.open_project(path)
        else:
            self.import_dataset(path)

    @Slot(object)
    def _note_results_of_another_dataset(self) -> None:
        """After importing another dataset, say that Evaluation, Export and Try it still show the current run,
        which was trained on a different one."""
        run_dir, source = self.state.run_dir, self.state.data_source
        if run_dir is None or source is None:
            return
        trained_on = RunFolder(run_dir).dataset_source()
        if trained_on is not None and trained_on != Path(source).resolve():
            note = (f"These results are of the run {Path(run_dir).name}, trained on another dataset "
                    f"({trained_on.name}), not on {Path(source).name} imported now. Train a run on it, or open one.")
            for panel in (self.evaluation_panel, self.export_panel):
                panel.message.show_note(note, until=self.state.sig_run_changed)   # a newer run: out of date

    def _show_results(self, metrics: object) -> None:
        """Bring the evaluation to the front when a run's figures arrive."""
        if metrics is not None:
            self.docks[self.evaluation_panel.objectName()].raise_()

    # -- status, errors --------------------------------------------------------------------------------
    @Slot()
    def _update_status(self, *_args) -> None:
        dataset = self.state.dataset
        data = ("no dataset" if dataset is None else
                f"{counted(len(dataset.samples), 'image')}, {counted(len(dataset.classes), 'class', 'classes')}")
        cfg = self.state.config
        busy = f" · running: {self.controller.current_kind}" if self.controller.busy else ""
        self.status_label.setText(f"{data} · {cfg.model} ({cfg.weights}) · freeze {cfg.freeze}{busy}")

    def show_error(self, what: str, hint: str = "", title: str = "desktop_tl") -> None:
        """A warning box that says what went wrong and what to do."""
        QMessageBox.warning(self, title, f"{what}\n\nWhat to do: {hint}" if hint else what)

    # -- settings and closing --------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        settings = app_settings()
        geometry = settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(default_window_size(self.screen().availableGeometry().size()))
        layout = settings.value("window/state")
        if isinstance(layout, QByteArray) and not layout.isEmpty():
            self._layout_restored = self.restoreState(layout, _LAYOUT_VERSION)

    def save_settings(self) -> None:
        """Store the window geometry and dock layout."""
        settings = app_settings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState(_LAYOUT_VERSION))
        settings.sync()

    def ask_stop_running_job(self) -> bool:
        """Ask whether to stop the running job and quit (tests replace this to avoid a modal box)."""
        kind = self.controller.current_kind or ""
        answer = QMessageBox.question(
            self, "Stop and quit?",
            f"{JOB_NAMES.get(kind, 'A task')} is still running. Stop it and quit?\n\n{STOP_CONSEQUENCES.get(kind, '')}"
            "Then you can save the project as it was when you chose to quit.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def stop_running_job(self, timeout_ms: int = 60_000) -> bool:
        """Stop the running job and wait (events flowing) until it has ended, at most `timeout_ms`; True when
        nothing runs any more."""
        if not self.controller.busy:
            return True
        self.statusBar().showMessage("Stopping…")
        waiting = QEventLoop(self)
        self.controller.sig_busy_changed.connect(waiting.quit)
        QTimer.singleShot(timeout_ms, waiting.quit)
        self.controller.stop()
        if self.controller.busy:
            waiting.exec()
        self.controller.sig_busy_changed.disconnect(waiting.quit)
        self.statusBar().clearMessage()
        return not self.controller.busy

    def closeEvent(self, event: QCloseEvent) -> None:
        """Quit: stop a running job (asked first) and wait for it, then offer to save the project as it was when
        the user chose to quit (not the dataset an import stopped halfway would leave), then end the thread."""
        quitting_with = self.current_project()
        if self.controller.busy:
            if not self.ask_stop_running_job():
                event.ignore()
                return
            self.stop_running_job()
        if not self.settle_unsaved_work("quitting", quitting_with):
            event.ignore()
            return
        if self.controller.thread.isRunning():
            self.save_settings()
            self.statusBar().showMessage("Stopping…")
            self.controller.shutdown()
            for dock in self.docks.values():
                dock.widget().widget().close()  # panels stop their own helpers (thumbnail decoding)
        event.accept()
