"""The window's shared state: what is selected now, announced to every panel by signals.

Panels never call each other; they read this object, change it only through its setters, and react to
its signals. The settings (TrainConfig, SplitConfig) are frozen: a change makes a new object and says so.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.index import DatasetIndex


class AppState(QObject):
    """Current dataset, model, weights, freeze spec, settings, run folder and results."""

    sig_dataset_changed = Signal(object)
    """DatasetIndex or None."""
    sig_model_changed = Signal(str, str)
    """(architecture name, weights id)."""
    sig_freeze_changed = Signal(str)
    """Freeze spec: head | all | last:N | modules:a,b."""
    sig_recipe_changed = Signal(str, float)
    """(recipe "auto" | "custom", time budget in seconds of the automatic recipe)."""
    sig_config_changed = Signal(object)
    """core.config.TrainConfig after any change of the training settings."""
    sig_split_changed = Signal(object)
    """core.config.SplitConfig after the split settings changed."""
    sig_run_changed = Signal(object)
    """Path of the current run folder, or None."""
    sig_metrics_changed = Signal(object)
    """metrics.json content (dict) of the current run, or None."""
    sig_export_changed = Signal(object)
    """core.deploy.export.ExportResult of the current run, or None."""
    sig_runs_changed = Signal(object)
    """(list of run folders) the project's runs changed."""
    sig_project_file_changed = Signal(object)
    """(Path | None) the project was saved as, or opened from, another file (None: a new project)."""
    sig_labels_csv_changed = Signal(object)
    """(Path | None) the confirmed-labels file changed."""
    sig_trial_report_changed = Signal(object)
    """(dict | None) the Monitor panel made a report of a silent trial (core.evaluation.trial.monitor_report)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.dataset: DatasetIndex | None = None
        self.data_source: Path | None = None
        self._split = SplitConfig()
        self._config = TrainConfig()
        self.run_dir: Path | None = None
        self.metrics: dict[str, Any] | None = None
        self.export = None
        self._runs: list[str] = []
        self._project_file: Path | None = None
        self._labels_csv: Path | None = None
        self.trial_report: dict[str, Any] | None = None

    def set_dataset(self, index: DatasetIndex | None) -> None:
        """A dataset was imported (or cleared)."""
        self.dataset = index
        self.data_source = index.source if index is not None else None
        self.sig_dataset_changed.emit(index)

    @property
    def config(self) -> TrainConfig:
        """The training settings (frozen; change them with `update_config` or `set_config`)."""
        return self._config

    @property
    def split(self) -> SplitConfig:
        """The split settings (frozen; change them with `set_split`)."""
        return self._split

    def set_config(self, config: TrainConfig) -> None:
        """All training settings at once (a project opened, a new project); every panel hears of it."""
        old, self._config = self._config, config
        if (old.model, old.weights) != (config.model, config.weights):
            self.sig_model_changed.emit(config.model, config.weights)
        if old.freeze != config.freeze:
            self.sig_freeze_changed.emit(config.freeze)
        if (old.recipe, old.budget) != (config.recipe, config.budget):
            self.sig_recipe_changed.emit(config.recipe, config.budget)
        if old != config:
            self.sig_config_changed.emit(config)

    def update_config(self, **changes: Any) -> None:
        """Some training settings, e.g. `update_config(epochs=5, lr=1e-3)`."""
        self.set_config(replace(self._config, **changes))

    def set_split(self, split: SplitConfig) -> None:
        """New split settings."""
        if split != self._split:
            self._split = split
            self.sig_split_changed.emit(split)

    def set_model(self, name: str, weights: str) -> None:
        """The user picked an architecture and a weights option (announced even when unchanged)."""
        if (name, weights) == (self._config.model, self._config.weights):
            self.sig_model_changed.emit(name, weights)
        self.update_config(model=name, weights=weights)

    def set_freeze(self, spec: str) -> None:
        """The freeze tree or a preset changed which layers train (announced even when unchanged)."""
        if spec == self._config.freeze:
            self.sig_freeze_changed.emit(spec)
        self.update_config(freeze=spec)

    def set_recipe(self, recipe: str, budget: float | None = None) -> None:
        """The automatic recipe with a time budget, or the custom recipe (the user's own settings)."""
        self.update_config(recipe=recipe, budget=self._config.budget if budget is None else budget)

    def set_run(self, run_dir: Path | None) -> None:
        """A run folder became current (new training, or opened from a project)."""
        self.run_dir = run_dir
        if run_dir is not None and str(run_dir) not in self._runs:
            self.set_runs([*self._runs, str(run_dir)])
        self.sig_run_changed.emit(run_dir)

    @property
    def runs(self) -> list[str]:
        """The project's run folders, oldest first (a copy: change them with `set_runs` or `set_run`)."""
        return list(self._runs)

    def set_runs(self, runs: list[str]) -> None:
        """The project's run folders (a project opened, a new project)."""
        if list(runs) != self._runs:
            self._runs = list(runs)
            self.sig_runs_changed.emit(self.runs)

    @property
    def project_file(self) -> Path | None:
        """The project file once saved or opened (its own runs and labels lie beside it), else None."""
        return self._project_file

    def set_project_file(self, path: Path | None) -> None:
        """The project was saved as, or opened from, `path` (None: a new, unsaved project)."""
        if path != self._project_file:
            self._project_file = path
            self.sig_project_file_changed.emit(path)

    @property
    def labels_csv(self) -> Path | None:
        """The labels confirmed with label assist (core.data.confirmed), once there are any."""
        return self._labels_csv

    def set_labels_csv(self, path: Path | None) -> None:
        """Where the project's confirmed labels are kept (None: none yet)."""
        if path != self._labels_csv:
            self._labels_csv = path
            self.sig_labels_csv_changed.emit(path)

    def set_metrics(self, metrics: dict[str, Any] | None) -> None:
        """Evaluation figures of the current run arrived."""
        self.metrics = metrics
        self.sig_metrics_changed.emit(metrics)

    def set_trial_report(self, report: dict[str, Any] | None) -> None:
        """The latest report of a silent trial (the Evaluation panel's HTML report includes it)."""
        self.trial_report = report
        self.sig_trial_report_changed.emit(report)

    def set_export(self, result) -> None:
        """The current run was exported to ONNX."""
        self.export = result
        self.sig_export_changed.emit(result)
