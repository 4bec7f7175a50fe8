"""Label assist, mounted by the shell on the Dataset panel (its Unlabelled… button, job client and message bar):
score a folder of unlabelled images with the current run's exported model (on the worker), open the labelling grid
(`unlabelled_dialog`), record the labels CSV in the project, and Retrain: the confirmed images join the training
split and the window trains a new run from the current run's best checkpoint (`core.runs.retrain`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from desktop_tl.core.events import Failed
from desktop_tl.core.project import own_labels_file
from desktop_tl.core.runs.folder import RunFolder
from desktop_tl.gui.labelling.label_assist_jobs import Retraining, Scored, retrain_job, score_job
from desktop_tl.gui.state import AppState
from desktop_tl.gui.widgets.panel_support import BUSY_MESSAGE, JobClient, MessageBar

if TYPE_CHECKING:
    from desktop_tl.gui.labelling.unlabelled_dialog import UnlabelledDialog

ASSIST_JOB = "label-assist"
RETRAIN_JOB = "retrain"
JOB_KINDS = frozenset({ASSIST_JOB, RETRAIN_JOB})


class LabelAssist(QObject):
    """Label assist's actions, built from what they use: the window's state, the job client whose outcomes they
    handle (only their own kinds), the message bar they speak through, the widget their dialogs belong to and
    where a folder dialog starts."""

    sig_train_requested = Signal()
    """Retrain: the dataset with the confirmed labels and the settings are in `AppState`; start a new run."""

    def __init__(self, state: AppState, jobs: JobClient, message: MessageBar, dialog_parent: QWidget,
                 start_dir: Callable[[], Path]) -> None:
        super().__init__(dialog_parent)
        self.state = state
        self.jobs = jobs
        self.message = message
        self.dialog_parent = dialog_parent
        self.start_dir = start_dir
        self.dialog: UnlabelledDialog | None = None     # the open labelling grid
        jobs.sig_result.connect(self._on_result)
        jobs.sig_failed.connect(self._on_failed)

    def labels_csv_target(self) -> Path | None:
        """Where confirmed labels go: the project's labels CSV, else the project's own `NAME.confirmed.csv`
        beside its file, else (an unsaved project) `RUN.confirmed.csv` beside the current run's folder; None
        without a run. No two projects share one file, so a label never joins another project's training."""
        if self.state.labels_csv is not None:
            return Path(self.state.labels_csv)
        if self.state.project_file is not None:
            return own_labels_file(Path(self.state.project_file))
        run_dir = Path(self.state.run_dir) if self.state.run_dir else None
        return run_dir.with_name(f"{run_dir.name}.confirmed.csv") if run_dir else None

    def label_unlabelled(self, folder: Path | None = None) -> bool:
        """Score a folder of unlabelled images (asking for one unless given) with the current run's exported
        model on the worker, then open the labelling grid; False (and why) when that cannot start."""
        run_dir = self.state.run_dir
        model = RunFolder(run_dir).exported_model() if run_dir is not None else None
        if run_dir is None or model is None or RunFolder(run_dir).status() != "finished":
            self.message.show_error("Label assist needs a finished run with an exported model: its suggestions and "
                                    "heat maps come from that model.",
                                    "Train a run to the end (or open a project with one), export it in the Export "
                                    "panel, then choose Unlabelled… again.", until=self.state.sig_export_changed)
            return False
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self.dialog_parent, "Choose the folder of unlabelled images",
                                                      str(self.start_dir()))
            if not chosen:
                return False
            folder = Path(chosen)
        labels_csv = self.labels_csv_target()
        if not self.jobs.submit(ASSIST_JOB, score_job(Path(run_dir), model, Path(folder), labels_csv)):
            self.message.show_note(BUSY_MESSAGE)
            return False
        self.message.show_note(f"Scoring the images of {Path(folder).name} with the model of {Path(run_dir).name}…")
        return True

    @Slot(str, object)
    def _on_result(self, kind: str, result: object) -> None:
        if kind == ASSIST_JOB:
            assert isinstance(result, Scored)
            self._open_assist(result)
        elif kind == RETRAIN_JOB:
            assert isinstance(result, Retraining)
            self._start_retraining(result)

    @Slot(str, object)
    def _on_failed(self, kind: str, failure: Failed) -> None:
        if kind not in JOB_KINDS:
            return
        if failure.cancelled:
            self.message.show_note("Cancelled.")
        else:
            self.message.show_failure(failure)

    def _open_assist(self, scored: Scored) -> None:
        from desktop_tl.gui.labelling.unlabelled_dialog import UnlabelledDialog  # loads the engine: only when asked

        if not scored.suggestions:
            self.message.show_note(f"All {scored.already} images of that folder are already labelled in "
                                   f"{scored.labels_csv.name}.")
            return
        already = f" ({scored.already} already labelled are left out)" if scored.already else ""
        self.message.show_note(f"{len(scored.suggestions)} images to label{already}; confirmed labels are saved in "
                               f"{scored.labels_csv}.")
        self.dialog = UnlabelledDialog(scored.suggestions, scored.classes, scored.labels_csv, self.dialog_parent)
        self.dialog.sig_saved.connect(self._on_labels_saved)
        self.dialog.sig_retrain.connect(lambda _csv: self.retrain())
        self.dialog.open()

    @Slot(object, int)
    def _on_labels_saved(self, labels_csv: Path, listed: int) -> None:
        self.state.set_labels_csv(Path(labels_csv))
        self.message.show_note(f"{labels_csv.name} lists {listed} images you labelled; they join the training split "
                               "when you retrain (or import the dataset again), and the project records the file.")

    def retrain(self) -> bool:
        """Join the confirmed labels to the dataset's training split and take the current run's settings,
        starting from its best checkpoint (on the worker); then ask the window to train a new run."""
        run_dir, index, labels_csv = self.state.run_dir, self.state.dataset, self.state.labels_csv
        if run_dir is None or index is None or labels_csv is None or not Path(labels_csv).is_file():
            self.message.show_error("Retraining needs a run, its imported dataset and labels confirmed with "
                                    "Unlabelled….", "Import the dataset, label some images, then retrain.")
            return False
        if not self.jobs.submit(RETRAIN_JOB, retrain_job(Path(run_dir), index, Path(labels_csv))):
            self.message.show_note(BUSY_MESSAGE)
            return False
        self.message.show_note("Adding the images you labelled to the training split…")
        return True

    def _start_retraining(self, retraining: Retraining) -> None:
        self.state.set_dataset(retraining.index)
        self.state.set_config(retraining.config)
        self.message.show_note(f"Retraining on {len(retraining.index.samples)} images ({retraining.index.confirmed} "
                               f"labelled by you, all in training; validation and test unchanged). {retraining.note}")
        self.sig_train_requested.emit()
