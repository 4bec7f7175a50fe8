"""Training monitor: hyperparameters, run folder, Start/Pause/Stop, progress, live curves and a log.

Training runs as one job on the engine worker (`desktop_tl.core.train.train_run`); its events
arrive through `EngineController.sig_event`. Points are buffered in growing numpy arrays and the
curves are redrawn by a ~15 Hz timer, never once per batch.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGraphicsItem,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.config import AUGMENT_PRESETS, BUDGET_PRESETS
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import BatchProgress, EpochEnd, Failed, Finished, Planned, RunStarted
from desktop_tl.core.reporting import describe, duration
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.gui.panel_support import JobClient, MessageBar
from desktop_tl.gui.state import AppState
from desktop_tl.gui.worker import EngineController, JobContext

TRAIN_JOB = "train"
REDRAW_MS = 66  # ~15 Hz
STATUS_DEBOUNCE_MS = 250
RECIPE_CHOICES = (  # (label, key): a budget preset of the automatic recipe, or "custom"
    ("Quick — about 2 minutes", "quick"),
    ("Balanced — up to 10 minutes", "balanced"),
    ("Best — up to an hour", "best"),
    ("Custom — your own settings", "custom"),
)
ORIENTATION_CHOICES = (
    ("Automatic (tested on validation)", "auto"),
    ("Fixed: never flip or turn (e.g. chest films)", "fixed"),
    ("Free: flips and quarter turns (e.g. microscopy)", "free"),
)
PLAN_HINT = ("The automatic recipe plans the run when you press Start, from your images and the speed of this "
             "computer: a linear probe first, then fine-tuning of every layer while the time budget allows. "
             "It stops sooner when the validation images stop improving.")


def new_run_dir(base: Path) -> Path:
    """A fresh timestamped run folder name under `base` (not created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = base / f"run-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = base / f"run-{stamp}-{n}"
    return candidate


class SeriesBuffer:
    """x/y points in growing float64 arrays (amortised O(1) append, no copy on read)."""

    def __init__(self, capacity: int = 256) -> None:
        self.x = np.empty(capacity, dtype=np.float64)
        self.y = np.empty(capacity, dtype=np.float64)
        self.n = 0
        self.dirty = False

    def append(self, x: float, y: float) -> None:
        """Add one point (NaN values are kept; pyqtgraph leaves a gap)."""
        if self.n == self.x.size:
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n], self.y[self.n] = x, y
        self.n += 1
        self.dirty = True

    def clear(self) -> None:
        """Forget every point."""
        self.n = 0
        self.dirty = True


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _styled_plot(title: str, y_label: str, legend_offset: tuple[int, int]) -> pg.PlotWidget:
    widget = pg.PlotWidget(background="w")
    item = widget.getPlotItem()
    item.setTitle(title, color="#333333", size="10pt")
    item.setLabel("bottom", "epoch", color="#333333")
    item.setLabel("left", y_label, color="#333333")
    for axis in ("left", "bottom"):
        item.getAxis(axis).setPen("#888888")
        item.getAxis(axis).setTextPen("#333333")
        # Repaint an unchanged axis from a cached pixmap: drawing tick labels is the costliest part of a redraw.
        item.getAxis(axis).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    item.showGrid(x=True, y=True, alpha=0.2)
    item.setDownsampling(auto=True, mode="peak")
    item.setClipToView(True)
    item.addLegend(offset=legend_offset, labelTextColor="#333333", brush=pg.mkBrush(255, 255, 255, 200))
    widget.setMinimumHeight(160)
    return widget


class TrainingMonitor(QWidget):
    """Hyperparameter form, run controls, progress, live loss/accuracy curves and a log."""

    sig_training_started = Signal(object)
    """Path of the run folder a training job was submitted for."""
    sig_training_finished = Signal(object)
    """core.events.Finished of the run that just ended (completed or stopped)."""
    sig_training_failed = Signal(object)
    """core.events.Failed when the run could not start or go on."""

    CURVES = {  # name: (plot, legend, colour, width, symbol)
        "batch_loss": ("loss", "train (batch)", "#90caf9", 1, None),
        "train_loss": ("loss", "train", "#1565c0", 2, "o"),
        "val_loss": ("loss", "validation", "#ef6c00", 2, "o"),
        "batch_accuracy": ("accuracy", "train (batch)", "#a5d6a7", 1, None),
        "train_accuracy": ("accuracy", "train", "#2e7d32", 2, "o"),
        "val_accuracy": ("accuracy", "validation", "#ef6c00", 2, "o"),
    }

    def __init__(self, state: AppState, controller: EngineController, parent: QWidget | None = None, *,
                 detect: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("trainingMonitor")
        self.state, self.controller = state, controller
        self.project_dir: Path | None = None
        self.active_run: Path | None = None
        self._paused = False
        self._last_finished: Finished | None = None

        self.banner = MessageBar(self)
        self.jobs = JobClient(controller, self)
        self._detect = detect
        self._build_form()
        self._build_controls()
        self._build_plots()
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setObjectName("trainingLog")
        self.log.setMaximumBlockCount(5000)
        self.log.setPlaceholderText("Messages and per-epoch results appear here.")

        charts = QWidget()
        charts_layout = QHBoxLayout(charts)
        charts_layout.setContentsMargins(0, 0, 0, 0)
        charts_layout.addWidget(self.loss_plot)
        charts_layout.addWidget(self.accuracy_plot)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(charts)
        splitter.addWidget(self.log)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.settings_box)
        layout.addLayout(self.controls)
        layout.addWidget(splitter, 1)

        self._redraw_timer = QTimer(self, interval=REDRAW_MS)
        self._redraw_timer.timeout.connect(self.flush_plots)
        self.jobs.sig_event.connect(self._on_event)
        self.jobs.sig_result.connect(self._on_result)
        self.jobs.sig_failed.connect(self._on_failed)
        controller.sig_busy_changed.connect(lambda _busy: self._update_buttons())
        state.sig_dataset_changed.connect(lambda _index: self._update_buttons())
        self.load_from_state()

    # -- building ----------------------------------------------------------------------------------
    def refresh_devices(self) -> None:
        """List the devices torch can use (imports torch), keeping the chosen setting."""
        wanted = self.state.config.device
        self.device.blockSignals(True)
        try:
            self.device.clear()
            from desktop_tl.core.training.devices import detect_devices  # imports torch

            for value, label in detect_devices():
                self.device.addItem(label, value)
            self.device.setCurrentIndex(max(0, self.device.findData(wanted)))
        finally:
            self.device.blockSignals(False)

    def _build_form(self) -> None:
        self.recipe = QComboBox()
        self.recipe.setObjectName("recipe")
        for label, key in RECIPE_CHOICES:
            self.recipe.addItem(label, key)
        self.recipe.setToolTip("How the run is planned: the automatic recipe chooses image size, layers, epochs and "
                               "learning rates for your images within the time given; Custom uses the fields below")
        self.orientation = QComboBox()
        for label, value in ORIENTATION_CHOICES:
            self.orientation.addItem(label, value)
        self.orientation.setToolTip("May training images be mirrored and turned? Say Fixed when left/right or up/down "
                                    "carries meaning (chest films, text)")
        self.plan_label = QLabel(PLAN_HINT, wordWrap=True)
        self.plan_label.setObjectName("planLabel")
        self.plan_label.setStyleSheet("color: #444444;")
        self.plan_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.epochs = QSpinBox(minimum=1, maximum=1000)
        self.batch_size = QSpinBox(minimum=0, maximum=4096)
        self.batch_size.setSpecialValueText("auto")
        self.batch_size.setToolTip("Images per training step; auto (0) uses the largest that fits in the GPU's "
                                   "memory, or 32 on a CPU")
        self.lr = QDoubleSpinBox(decimals=5, minimum=0.00001, maximum=1.0, singleStep=0.0001)
        self.image_size = QSpinBox(minimum=0, maximum=1024, singleStep=32)
        self.image_size.setSpecialValueText("model default")
        self.image_size.setSuffix(" px")
        self.image_size.setToolTip("0 uses the model's own input size; smaller is faster")
        self.augment = QComboBox()
        self.augment.addItems(list(AUGMENT_PRESETS))
        self.augment.setToolTip("Random flips, crops and colour changes applied to training images")
        self.device = QComboBox()
        if self._detect:
            self.refresh_devices()
        else:   # the window shows first; `refresh_devices` runs once the engine (torch) is loaded
            self.device.addItem("auto (detecting…)", "auto")
            self.device.addItem("cpu", "cpu")
        box = QGroupBox("Training")
        grid = QGridLayout(box)
        grid.addWidget(QLabel("Recipe"), 0, 0)
        grid.addWidget(self.recipe, 0, 1)
        grid.addWidget(QLabel("Orientation"), 0, 2)
        grid.addWidget(self.orientation, 0, 3)
        grid.addWidget(QLabel("Device"), 0, 4)
        grid.addWidget(self.device, 0, 5)
        self.custom_box = QWidget()
        self.custom_box.setObjectName("customSettings")
        custom = QGridLayout(self.custom_box)
        custom.setContentsMargins(0, 0, 0, 0)
        rows = [("Epochs", self.epochs), ("Batch size", self.batch_size), ("Learning rate", self.lr),
                ("Image size", self.image_size), ("Augmentation", self.augment)]
        for i, (label, widget) in enumerate(rows):
            row, pair = divmod(i, 3)
            custom.addWidget(QLabel(label), row, 2 * pair)
            custom.addWidget(widget, row, 2 * pair + 1)
        for column in (1, 3, 5):
            grid.setColumnStretch(column, 1)
            custom.setColumnStretch(column, 1)
        grid.addWidget(self.custom_box, 1, 0, 1, 6)
        grid.addWidget(self.plan_label, 2, 0, 1, 6)
        self.settings_box = box
        for spin in (self.epochs, self.batch_size, self.image_size):
            spin.valueChanged.connect(self._write_config)
        self.lr.valueChanged.connect(self._write_config)
        self.augment.currentIndexChanged.connect(self._write_config)
        self.device.currentIndexChanged.connect(self._write_config)
        self.orientation.currentIndexChanged.connect(self._write_config)
        self.recipe.currentIndexChanged.connect(self._write_recipe)
        self.state.sig_config_changed.connect(lambda _config: self.load_from_state())

        self.run_folder = QLineEdit()
        self.run_folder.setObjectName("runFolder")
        # the folder's status is read (JSON only) once typing pauses, not on every keystroke
        self._status_timer = QTimer(self, singleShot=True, interval=STATUS_DEBOUNCE_MS)
        self._status_timer.timeout.connect(self._update_buttons)
        self.run_folder.textChanged.connect(lambda _text: self._status_timer.start())
        self.choose_button = QPushButton("Choose…")
        self.choose_button.setToolTip("Pick a run folder; an unfinished run there can be resumed")
        self.choose_button.clicked.connect(self.choose_run_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("Run folder"))
        folder_row.addWidget(self.run_folder, 1)
        folder_row.addWidget(self.choose_button)
        grid.addLayout(folder_row, 3, 0, 1, 6)

    def _build_controls(self) -> None:
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current batch; the last finished epoch is kept and can be resumed")
        self.progress = QProgressBar(minimum=0, maximum=1000, value=0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("Idle")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.controls = QHBoxLayout()
        self.controls.addWidget(self.start_button)
        self.controls.addWidget(self.pause_button)
        self.controls.addWidget(self.stop_button)
        self.controls.addWidget(self.progress, 1)

    def _build_plots(self) -> None:
        self.loss_plot = _styled_plot("Loss", "loss", (-8, 8))                 # legend top right
        self.accuracy_plot = _styled_plot("Accuracy", "accuracy", (-8, -8))    # legend bottom right
        self.accuracy_plot.getPlotItem().setYRange(0.0, 1.0, padding=0.02)
        self._loss_top = 0.0             # upper end of the loss axis; grows in steps, see _grow_loss_range
        plots = {"loss": self.loss_plot, "accuracy": self.accuracy_plot}
        self.series: dict[str, SeriesBuffer] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        for name, (plot, legend, colour, width, symbol) in self.CURVES.items():
            self.series[name] = SeriesBuffer()
            style = {"pen": pg.mkPen(colour, width=width), "name": legend}
            if symbol:
                style.update(symbol=symbol, symbolSize=6, symbolBrush=colour, symbolPen=colour)
            self.curves[name] = plots[plot].plot(**style)

    # -- settings <-> state ----------------------------------------------------------------------------
    def load_from_state(self) -> None:
        """Show the recipe and settings of `state.config` (after a project was opened)."""
        cfg = self.state.config
        widgets = (self.epochs, self.batch_size, self.lr, self.image_size, self.augment, self.device, self.orientation)
        for widget in widgets:
            widget.blockSignals(True)
        try:
            self.epochs.setValue(cfg.epochs)
            self.batch_size.setValue(cfg.batch_size)
            self.lr.setValue(cfg.lr)
            self.image_size.setValue(cfg.image_size or 0)
            self.augment.setCurrentText(cfg.augment)
            self.device.setCurrentIndex(max(0, self.device.findData(cfg.device)))
            self.orientation.setCurrentIndex(max(0, self.orientation.findData(cfg.orientation)))
        finally:
            for widget in widgets:
                widget.blockSignals(False)
        self._show_recipe()
        self._update_buttons()

    def _show_recipe(self) -> None:
        """Select the recipe of `state.config` (a budget that is no preset gets its own entry)."""
        cfg = self.state.config
        preset = next((name for name, seconds in BUDGET_PRESETS.items() if seconds == cfg.budget), None)
        wanted = "custom" if cfg.recipe == "custom" else preset or f"{cfg.budget:g}"
        if self.recipe.findData(wanted) < 0:
            self.recipe.insertItem(self.recipe.count() - 1, f"Automatic — up to {cfg.budget / 60:g} minutes", wanted)
        self.recipe.blockSignals(True)
        self.recipe.setCurrentIndex(self.recipe.findData(wanted))
        self.recipe.blockSignals(False)
        custom = cfg.recipe == "custom"
        self.custom_box.setVisible(custom)
        self.orientation.setEnabled(not custom)
        if self.active_run is None:
            self.plan_label.setText("Custom: the run trains with the settings above." if custom else PLAN_HINT)

    @Slot()
    def _write_recipe(self) -> None:
        key = self.recipe.currentData()
        if key == "custom":
            self.state.set_recipe("custom")
        else:
            self.state.set_recipe("auto", BUDGET_PRESETS.get(key) or float(key))

    @Slot()
    def _write_config(self) -> None:
        self.state.update_config(epochs=self.epochs.value(), batch_size=self.batch_size.value(), lr=self.lr.value(),
                                 image_size=self.image_size.value() or None, augment=self.augment.currentText(),
                                 device=self.device.currentData() or "auto",
                                 orientation=self.orientation.currentData() or "auto")

    def set_project_dir(self, folder: Path | None) -> None:
        """New runs go under `folder/runs` (else under ~/desktop_tl_runs)."""
        self.project_dir = folder

    def runs_base(self) -> Path:
        """Where a new run folder is created when none is chosen."""
        return self.project_dir / "runs" if self.project_dir else Path.home() / "desktop_tl_runs"

    def set_run_dir(self, folder: Path | None) -> None:
        """Use `folder` for the next Start (None: a new timestamped folder)."""
        self.run_folder.setText(str(folder) if folder else "")

    def chosen_run_dir(self) -> Path | None:
        """The run folder typed or chosen, if any."""
        text = self.run_folder.text().strip()
        return Path(text).expanduser() if text else None

    @Slot()
    def choose_run_folder(self) -> None:
        """Ask for a run folder (an existing unfinished run there is resumed)."""
        start = self.chosen_run_dir() or self.runs_base()
        folder = QFileDialog.getExistingDirectory(self, "Run folder", str(start if start.exists() else Path.home()))
        if folder:
            self.set_run_dir(Path(folder))

    @staticmethod
    def _run_status(folder: Path | None) -> str:
        """core.runs.folder.RunFolder's status of `folder` ("new" when none is chosen)."""
        return RunFolder(folder).status() if folder is not None else "new"

    def _update_buttons(self) -> None:
        training = self.active_run is not None
        busy_other = self.controller.busy and not training
        resumable = self._run_status(self.chosen_run_dir()) in ("created", "interrupted")
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
    @Slot()
    def start(self) -> bool:
        """Create the run (unless resuming) and train it on the worker; False when nothing started."""
        if self.active_run is not None:
            return False
        self.banner.clear_message()
        chosen = self.chosen_run_dir()
        status = self._run_status(chosen)
        if status == "finished":
            self._show_failure(Failed(f"{chosen} already holds a finished run.",
                                      "Clear the run folder field to start a new run, or choose another folder."))
            return False
        if status == "damaged":
            self._show_failure(Failed(f"The run settings (run.json) in {chosen} are damaged.",
                                      "Choose another run folder."))
            return False
        if status == "occupied":
            self._show_failure(Failed(f"{chosen} already holds other files and no run.",
                                      "Choose an empty or new folder for the run (or clear the field)."))
            return False
        resume = status in ("created", "interrupted")
        if not resume and self.state.dataset is None:
            self._show_failure(Failed("No dataset imported yet.",
                                      "Import a dataset folder (drop it on the window) before training."))
            return False
        run_dir = chosen or new_run_dir(self.runs_base())
        index, config, split = self.state.dataset, replace(self.state.config), replace(self.state.split)

        def job(ctx: JobContext) -> Path:
            import torch

            from desktop_tl.core.runs.folder import create_run
            from desktop_tl.core.training.devices import compute_threads
            from desktop_tl.core.training.run import train_run

            torch.set_num_threads(compute_threads())
            if not resume:
                create_run(run_dir, index, config, split, should_stop=ctx.should_stop)
            for event in train_run(run_dir, ctx.control):
                if isinstance(event, Failed):
                    raise UserError(event.what, event.hint)
                ctx.event(event)
            return run_dir

        if not self.jobs.submit(TRAIN_JOB, job):
            self._show_failure(Failed("Another task is running.", "Start training when it has finished."))
            return False
        self.active_run = run_dir
        self._last_finished = None
        self.set_run_dir(run_dir)
        self._paused = False
        self.pause_button.setText("Pause")
        self.clear_plots()
        if resume:
            self._show_history(run_dir)
        # A full garbage collection over the whole heap (torch, timm, Qt wrappers) holds the GIL for
        # a quarter of a second; freezing the heap while training keeps those passes short.
        gc.freeze()
        self._log(f"{'Resuming' if resume else 'Starting'} run in {run_dir}")
        self.progress.setValue(0)
        self.progress.setFormat("Preparing…")
        self._redraw_timer.start()
        self._update_buttons()
        self.sig_training_started.emit(run_dir)
        return True

    @Slot()
    def toggle_pause(self) -> None:
        """Pause between batches, or continue."""
        if self.active_run is None:
            return
        self._paused = not self._paused
        self.jobs.pause(self._paused)
        self.pause_button.setText("Continue" if self._paused else "Pause")
        if self._paused:
            self.progress.setFormat("Paused — " + self.progress.format())
            self._log("Paused (after the current batch).")
        else:
            self._log("Continuing.")

    @property
    def paused(self) -> bool:
        """True while the user paused training."""
        return self._paused

    @Slot()
    def stop(self) -> None:
        """Stop after the current batch; the last completed epoch is kept."""
        if self.active_run is None:
            return
        self.jobs.cancel()
        self._paused = False
        self.stop_button.setEnabled(False)
        self.pause_button.setEnabled(False)
        self.progress.setFormat("Stopping after the current batch…")
        self._log("Stopping after the current batch…")

    # -- events ----------------------------------------------------------------------------------------
    @Slot(object)
    def _on_event(self, event: object) -> None:
        if self.active_run is None:
            return
        if isinstance(event, BatchProgress):
            self._show_progress(event)
            return
        if isinstance(event, EpochEnd):
            for name in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
                self.series[name].append(float(event.epoch), getattr(event, name))
        elif isinstance(event, RunStarted):
            self.set_epoch_range(event.total_epochs)
        elif isinstance(event, Planned):
            self.plan_label.setText("<br>".join(_escape(line) for line in event.lines))
        elif isinstance(event, Finished):
            self._last_finished = event
        text = describe(event)
        if text:
            self._log(text + (" Press Resume to continue." if isinstance(event, Finished) and event.stopped_by_user
                              else ""))

    def _show_progress(self, event: BatchProgress) -> None:
        x = event.epoch - 1 + event.batch / event.batches
        if event.phase == "train":
            self.series["batch_loss"].append(x, event.loss)
            self.series["batch_accuracy"].append(x, event.accuracy)
        done = (event.epoch - 1) * event.batches + event.batch
        self.progress.setValue(round(1000 * done / (event.epochs * event.batches)))
        what = "linear probe: features" if event.phase == "features" else f"batch {event.batch}/{event.batches}"
        text = (f"Epoch {event.epoch}/{event.epochs} · {what} · {event.images_per_sec:.1f} img/s · "
                f"ETA about {duration(event.eta_seconds)}")
        self.progress.setFormat(("Paused — " if self._paused else "") + text)

    @Slot(str, object)
    def _on_result(self, _kind: str, _result: object) -> None:
        if self.active_run is None:
            return
        run_dir, finished = self.active_run, self._last_finished
        self._end_run("Stopped" if finished is not None and finished.stopped_by_user else "Finished")
        if finished is None:
            return
        self.state.set_run(run_dir)
        metrics = finished.metrics
        if metrics is None and not finished.stopped_by_user:
            metrics = RunFolder(run_dir).metrics()        # the run had finished before
        self.state.set_metrics(metrics)                    # None for a stopped run: nothing evaluated yet
        self.sig_training_finished.emit(finished)

    @Slot(str, object)
    def _on_failed(self, _kind: str, failed: object) -> None:
        if self.active_run is None:
            return
        assert isinstance(failed, Failed)
        self._end_run("Failed")
        self._show_failure(failed)
        self.sig_training_failed.emit(failed)

    def _end_run(self, label: str) -> None:
        gc.unfreeze()
        self.active_run = None
        self._paused = False
        self.pause_button.setText("Pause")
        self.flush_plots()
        self._redraw_timer.stop()
        if label == "Finished":
            self.progress.setValue(self.progress.maximum())
        self.progress.setFormat(label)
        self._update_buttons()

    def _show_failure(self, failed: Failed) -> None:
        self.banner.show_error(failed.what, failed.hint)
        self._log(f"Error: {failed.what}" + (f" What to do: {failed.hint}" if failed.hint else ""))

    def _log(self, line: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {line}")

    # -- plots -----------------------------------------------------------------------------------------
    @Slot()
    def flush_plots(self) -> None:
        """Push buffered points to the curves that changed (called by the redraw timer)."""
        changed = False
        for name, series in self.series.items():
            if series.dirty:
                self.curves[name].setData(series.x[:series.n], series.y[:series.n])
                series.dirty = False
                changed = True
        if changed:
            self._grow_loss_range()

    def _grow_loss_range(self) -> None:
        """Widen the loss axis in coarse steps when a point would leave it (never on every redraw)."""
        top = 0.0
        for name in ("batch_loss", "train_loss", "val_loss"):
            series = self.series[name]
            values = series.y[:series.n]
            finite = values[np.isfinite(values)]
            if finite.size:
                top = max(top, float(finite.max()))
        if top <= self._loss_top:
            return
        step = 10 ** math.floor(math.log10(top)) / 2 if top > 0 else 0.5
        self._loss_top = math.ceil(top * 1.05 / step) * step
        self.loss_plot.getPlotItem().setYRange(0.0, self._loss_top, padding=0.02)

    def _show_history(self, run_dir: Path) -> None:
        """Plot the finished epochs of a run being resumed (from its last checkpoint's metadata)."""
        from desktop_tl.core.runs import checkpoint

        if not (run_dir / checkpoint.LAST).is_file():
            return                           # stopped before the first epoch ended: it starts over
        try:
            history = checkpoint.read_meta(run_dir / checkpoint.LAST).get("history") or []
        except (UserError, OSError, ValueError):
            return                           # unreadable: the engine reports it when training resumes
        for row in history:
            try:
                epoch = float(row["epoch"])
                points = {name: float(row[name]) for name in ("train_loss", "val_loss", "train_accuracy",
                                                              "val_accuracy")}
            except (KeyError, TypeError, ValueError):
                continue
            for name, value in points.items():
                self.series[name].append(epoch, value)
        self.flush_plots()

    def set_epoch_range(self, epochs: int) -> None:
        """Fix the x axis to the run's epochs, so the axes need no re-layout while points arrive."""
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.getPlotItem().setXRange(0.0, float(max(1, epochs)), padding=0.02)

    def clear_plots(self) -> None:
        """Empty every curve (a new run starts)."""
        for series in self.series.values():
            series.clear()
        self._loss_top = 0.0
        self.flush_plots()

    def point_counts(self) -> dict[str, int]:
        """Points drawn per curve (for checks and tests)."""
        return {name: 0 if curve.getData()[0] is None else len(curve.getData()[0])
                for name, curve in self.curves.items()}


if __name__ == "__main__":  # preview: python -m desktop_tl.gui.training_monitor
    import sys

    from desktop_tl.gui.panel_support import preview_panel

    sys.exit(preview_panel(TrainingMonitor, 900, 650))
