"""Training monitor: hyperparameters, run folder, Start/Pause/Stop, progress, live curves and a log.

The pieces, each with one job: `training_settings` (the form), `run_folder_picker` (the run-folder row),
`run_controller` (whether a run may start, the job on the engine worker, pause, stop, the run's events and end
as signals), `run_progress` (the progress line) and `training_curves` (points buffered in growing numpy arrays,
redrawn by a ~15 Hz timer, never once per batch). This panel composes them, keeps the log and the runs list.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QSplitter, QVBoxLayout, QWidget

from desktop_tl.core.events import BatchProgress, EpochEnd, Failed, Finished, Message, Planned, RunStarted
from desktop_tl.core.project import own_runs_folder
from desktop_tl.core.reporting import describe
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.core.runs.listing import RunSummary, find_runs
from desktop_tl.core.runs.run_log import RunLog, read_log
from desktop_tl.gui.state import AppState
from desktop_tl.gui.training.run_controller import RunController
from desktop_tl.gui.training.run_folder_picker import RunFolderPicker
from desktop_tl.gui.training.run_progress import RunProgress
from desktop_tl.gui.training.runs_dialog import RunsDialog
from desktop_tl.gui.training.training_curves import TrainingCurves
from desktop_tl.gui.training.training_jobs import run_summary
from desktop_tl.gui.training.training_settings import TrainingSettings
from desktop_tl.gui.widgets.panel_support import MessageBar
from desktop_tl.gui.worker import EngineController


class TrainingMonitor(QWidget):
    """Hyperparameter form, run controls, progress, live loss/accuracy curves and a log."""

    sig_training_started = Signal(object)
    """Path of the run folder a training job was submitted for."""
    sig_training_finished = Signal(object)
    """core.events.Finished of the run that just ended (completed or stopped)."""
    sig_training_failed = Signal(object)
    """core.events.Failed when the run could not start or go on."""
    sig_open_run = Signal(object)
    """Path of a run the user chose in the runs list to make current (its evaluation and export)."""

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None, *,
                 detect: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("trainingMonitor")
        self.state, self.controller = state, controller
        self._runs_dialog: RunsDialog | None = None

        self.banner = MessageBar(self)
        self.runner = RunController(state, controller, self.runs_base, self)
        self._detect = detect
        self._build_form()
        self._build_controls()
        self.charts = TrainingCurves(self)
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setObjectName("trainingLog")
        self.log.setMaximumBlockCount(5000)
        self.log.setPlaceholderText("Messages and per-epoch results appear here.")

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.charts)
        splitter.addWidget(self.log)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.settings_box)
        layout.addLayout(self.controls)
        layout.addWidget(splitter, 1)

        self.runner.sig_started.connect(self._on_started)
        self.runner.sig_event.connect(self._on_event)
        self.runner.sig_ended.connect(self._on_ended)
        controller.sig_busy_changed.connect(lambda _busy: self._update_buttons())
        state.sig_dataset_changed.connect(lambda _index: self._update_buttons())
        state.sig_dataset_changed.connect(lambda _index: self._clear_stale_banner())
        state.sig_config_changed.connect(lambda _config: self._update_buttons())
        self._update_buttons()

    # -- building ----------------------------------------------------------------------------------
    def _build_form(self) -> None:
        self.settings = TrainingSettings(self.state, self, detect=self._detect)
        self.settings_box = self.settings
        for name in ("recipe", "orientation", "device", "epochs", "batch_size", "lr", "image_size", "augment"):
            setattr(self, name, getattr(self.settings, name))
        self.folder_picker = RunFolderPicker(self.runs_base, self)
        self.folder_picker.sig_changed.connect(self._update_buttons)
        self.folder_picker.sig_runs_requested.connect(self.show_runs)
        self.run_folder = self.folder_picker.run_folder
        self.settings.grid.addWidget(self.folder_picker, self.settings.grid.rowCount(), 0, 1, 4)

    def _build_controls(self) -> None:
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current batch; the last finished epoch is kept and can be resumed")
        self.progress = RunProgress(self)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.controls = QHBoxLayout()
        self.controls.addWidget(self.start_button)
        self.controls.addWidget(self.pause_button)
        self.controls.addWidget(self.stop_button)
        self.controls.addWidget(self.progress, 1)

    def load_from_state(self) -> None:
        """Show the settings of `state.config` (after a project was opened)."""
        self.settings.load_from_state()
        self._update_buttons()

    def refresh_devices(self) -> None:
        """List the devices torch can use (imports torch), keeping the chosen setting."""
        self.settings.refresh_devices()

    def runs_base(self) -> Path:
        """Where a new run folder is created when none is chosen: the project's own `NAME.runs/` beside its
        file (so two projects saved in one folder never share runs), else ~/desktop_tl_runs."""
        project = self.state.project_file
        return own_runs_folder(project) if project else Path.home() / "desktop_tl_runs"

    def reset(self) -> None:
        """Forget what the panel shows of an earlier project (New project): the run folder, the plan, the curves,
        the log, the progress line and any message. A run in training keeps them."""
        if self.active_run is not None:
            return
        self.set_run_dir(None)
        self.settings.show_plan(None)
        self.charts.clear()
        self.log.clear()
        self.progress.idle()
        self.banner.clear_message()

    def set_run_dir(self, folder: Path | None) -> None:
        """Use `folder` for the next Start (None: a new timestamped folder)."""
        self.folder_picker.set_folder(folder)

    def show_run(self, run_dir: Path | None) -> None:
        """Show a run opened from a project or the runs list: its folder (Resume when it was interrupted), the
        curves of its saved epochs, its log as it was shown while it trained, and a line saying where it stands."""
        self.set_run_dir(run_dir)
        if self.active_run is not None:
            return                          # the curves and log belong to the run being trained
        self.charts.clear()
        if run_dir is None:
            return
        folder = RunFolder(run_dir)
        history = folder.history()
        if history:
            self.charts.set_epoch_range(int(max(row.get("epoch", 0) for row in history)))
            self.charts.show_history(history)
        self.log.clear()
        earlier = read_log(run_dir)
        if earlier:
            self.log.appendPlainText("\n".join(earlier))
        self._log(run_summary(folder.status(), history, run_dir.name))

    def project_runs(self) -> list[RunSummary]:
        """The runs the project records (and this session trained or trains: "running") and those in the
        project's runs folder, newest first."""
        recorded = [Path(r) for r in self.state.runs] + ([self.active_run] if self.active_run else [])
        runs = find_runs(recorded, self.runs_base() if self.state.project_file else None)
        active = self.active_run.resolve() if self.active_run else None
        return [replace(run, status="running") if run.path.resolve() == active else run for run in runs]

    @Slot()
    def show_runs(self) -> None:
        """Open (or bring forward) the list of the project's runs."""
        if self._runs_dialog is None:
            dialog = self._runs_dialog = RunsDialog(self.project_runs, lambda: self.controller.busy, self)
            dialog.sig_selected.connect(lambda path: self.show_run(path) if self.active_run is None else None)
            dialog.sig_resume.connect(self.resume_run)
            dialog.sig_make_current.connect(self.sig_open_run)
            for signal in (self.sig_training_started, self.sig_training_finished, self.sig_training_failed):
                signal.connect(lambda _arg: dialog.refresh() if dialog.isVisible() else None)
            self.controller.sig_busy_changed.connect(lambda _busy: dialog.update_buttons())
        self._runs_dialog.refresh()
        self._runs_dialog.show()
        self._runs_dialog.raise_()

    def resume_run(self, run_dir: Path) -> bool:
        """Show an interrupted run and continue it where it stopped; False when nothing started."""
        if self.active_run is not None:
            return False
        self.show_run(run_dir)
        return self.start()

    def chosen_run_dir(self) -> Path | None:
        """The run folder typed or chosen, if any."""
        return self.folder_picker.chosen()

    def _update_buttons(self) -> None:
        training = self.active_run is not None
        busy_other = self.controller.busy and not training
        chosen = self.chosen_run_dir()
        resumable = chosen is not None and RunFolder(chosen).resumable
        self.start_button.setText("Resume" if resumable else "Start")
        self.start_button.setEnabled(not training and not busy_other)
        self.start_button.setToolTip("Another task is running" if busy_other else
                                     "Continue the unfinished run in this folder" if resumable else
                                     "Train on the imported dataset" if self.state.dataset is not None else
                                     "Import a dataset first")
        self.pause_button.setEnabled(training)
        self.stop_button.setEnabled(training)
        self.settings_box.setEnabled(not training)

    # -- running ---------------------------------------------------------------------------------------
    @property
    def active_run(self) -> Path | None:
        """The run folder being trained, if any."""
        return self.runner.active_run

    @property
    def paused(self) -> bool:
        """True while the user paused training."""
        return self.runner.paused

    @Slot()
    def start(self) -> bool:
        """Create the run (unless resuming) and train it on the worker; False (and why) when nothing started."""
        if self.active_run is not None:
            return False
        self.banner.clear_message()
        refusal = self.runner.start(self.chosen_run_dir())
        if refusal is not None:
            self._show_failure(refusal)
            return False
        return True

    @Slot(object, bool)
    def _on_started(self, run_dir: Path, resumed: bool) -> None:
        self.set_run_dir(run_dir)
        self.pause_button.setText("Pause")
        self.charts.clear()
        if resumed:                  # the finished epochs of the run being resumed
            self.charts.show_history(RunFolder(run_dir).history())
        self._log(f"{'Resuming' if resumed else 'Starting'} run in {run_dir}")
        self.progress.preparing()
        self.charts.redraw_timer.start()
        self._update_buttons()
        self.sig_training_started.emit(run_dir)

    def _clear_stale_banner(self) -> None:
        """A new dataset makes an earlier refusal ("No dataset imported yet", say) obsolete; a training error
        of the run in progress stays."""
        if self.active_run is None:
            self.banner.clear_message()

    @Slot()
    def toggle_pause(self) -> None:
        """Pause between batches, or continue."""
        if self.active_run is None:
            return
        paused = self.runner.toggle_pause()
        self.pause_button.setText("Continue" if paused else "Pause")
        self.progress.set_paused(paused)
        self._log("Paused (after the current batch)." if paused else "Continuing.", keep=True)

    @Slot()
    def stop(self) -> None:
        """Stop after the current batch; the last completed epoch is kept."""
        if not self.runner.stop():
            return
        self.stop_button.setEnabled(False)
        self.pause_button.setEnabled(False)
        self.progress.stopping()
        self._log("Stopping after the current batch…", keep=True)

    # -- events ----------------------------------------------------------------------------------------
    @Slot(object)
    def _on_event(self, event: object) -> None:
        if isinstance(event, BatchProgress):
            self._show_progress(event)
            return
        if isinstance(event, EpochEnd):
            self.charts.add_epoch(event.epoch, vars(event))
        elif isinstance(event, RunStarted):
            self.charts.set_epoch_range(event.total_epochs)
        elif isinstance(event, Planned):
            self.settings.show_plan(event.lines)
        text = describe(event)
        if isinstance(event, Message):
            self.progress.note(event.text)      # what is being prepared, until the batches come
        if text:
            self._log(text + (" Press Resume to continue." if isinstance(event, Finished) and event.stopped_by_user
                              else ""))

    def _show_progress(self, event: BatchProgress) -> None:
        if event.phase == "train":
            self.charts.add_batch(event.epoch - 1 + event.batch / event.batches, event.loss, event.accuracy)
        self.progress.batch(event, self.paused)

    @Slot(str, object, object)
    def _on_ended(self, label: str, finished: Finished | None, failed: Failed | None) -> None:
        self.pause_button.setText("Pause")
        self.charts.flush()
        self.charts.redraw_timer.stop()
        self.progress.ended(label)
        self._update_buttons()
        if failed is not None:
            self._show_failure(failed)
            self.sig_training_failed.emit(failed)
        elif finished is not None:
            self.sig_training_finished.emit(finished)

    def _show_failure(self, failed: Failed) -> None:
        self.banner.show_error(failed.what, failed.hint)
        self._log(f"Error: {failed.what}" + (f" What to do: {failed.hint}" if failed.hint else ""))

    def _log(self, line: str, keep: bool = False) -> None:
        """Append a line and follow it (the view scrolls to the newest line); `keep`: also in the log.txt of the
        run being trained (the engine's events go there from the worker)."""
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {line}")
        if keep and self.active_run is not None:
            RunLog(self.active_run).write(line)
        bar = self.log.verticalScrollBar()
        bar.setValue(bar.maximum())

    # -- curves ----------------------------------------------------------------------------------------
    @property
    def curves(self) -> dict:
        """The pyqtgraph curves by name (see TrainingCurves.CURVES)."""
        return self.charts.curves

    def point_counts(self) -> dict[str, int]:
        """Points drawn per curve (for checks and tests)."""
        return self.charts.point_counts()



if __name__ == "__main__":  # preview: python -m desktop_tl.gui.training.training_monitor
    import sys

    from desktop_tl.gui.widgets.panel_support import preview_panel

    sys.exit(preview_panel(TrainingMonitor, 900, 650))
