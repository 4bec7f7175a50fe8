"""The dataset panel's split settings: validation and test fractions, seed, patients kept together."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QPushButton, QWidget

from desktop_tl.core.config import SplitConfig
from desktop_tl.gui.widgets.number_box import DecimalBox, NumberBox


class SplitSettings(QGroupBox):
    """Validation and test fractions, seed, patient grouping; Re-split applies them to the dataset."""

    sig_changed = Signal(object)
    """SplitConfig after the user edited a setting."""
    sig_apply = Signal(object)
    """SplitConfig the user wants the current dataset re-split with."""

    def __init__(self, config: SplitConfig, parent: QWidget | None = None) -> None:
        super().__init__("Split", parent)
        self.val = self._fraction_box("Validation", "Share of each class held out to watch training (validation).")
        self.test = self._fraction_box("Test", "Share of each class kept apart for the final test score.")
        self.seed = NumberBox("Seed", self)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Same seed, same split.")
        self.group = QCheckBox("Keep each patient in one split", self)
        self.group.setToolTip("Images of one patient (DICOM PatientID, or the CSV's group column) all go to the "
                              "same split, so the test score is not flattered by a patient seen in training.")
        self.near = QCheckBox("Keep near duplicates together", self)
        self.near.setToolTip("Images that show the same picture (saved again, resized, re-windowed or cropped "
                             "slightly) go to the same split, so no test image has its twin in training.")
        self.apply_button = QPushButton("Re-split", self)
        self.apply_button.setObjectName("applySplit")
        self.apply_button.setToolTip("Import the same dataset again with these split settings.")
        self.apply_button.clicked.connect(lambda: self.sig_apply.emit(self.config()))
        form = QFormLayout(self)
        form.addRow("Validation", self.val)
        form.addRow("Test", self.test)
        form.addRow("Seed", self.seed)
        form.addRow(self.group)
        form.addRow(self.near)
        form.addRow(self.apply_button)
        self.set_config(config)
        for box in (self.val, self.test):
            box.valueChanged.connect(self._emit_changed)
        self.seed.valueChanged.connect(self._emit_changed)
        self.group.toggled.connect(self._emit_changed)
        self.near.toggled.connect(self._emit_changed)

    def _emit_changed(self, *_) -> None:
        self.sig_changed.emit(self.config())

    def _fraction_box(self, what: str, tip: str) -> DecimalBox:
        box = DecimalBox(what, self)
        box.setRange(0.0, 0.8)
        box.setSingleStep(0.05)
        box.setDecimals(3)
        box.setToolTip(tip)
        return box

    def config(self) -> SplitConfig:
        """The settings shown."""
        return SplitConfig(round(self.val.value(), 4), round(self.test.value(), 4), self.seed.value(),
                           self.group.isChecked(), self.near.isChecked())

    def set_config(self, config: SplitConfig) -> None:
        """Show `config` (without emitting sig_changed)."""
        for widget in (self.val, self.test, self.seed, self.group, self.near):
            widget.blockSignals(True)
        shown = ((self.val, config.val_fraction), (self.test, config.test_fraction), (self.seed, config.seed))
        for box, value in shown:
            if box.value() != value:        # setting the same value again would rewrite text being typed
                box.setValue(value)
        self.group.setChecked(config.group_by_patient)
        self.near.setChecked(config.group_near_duplicates)
        for widget in (self.val, self.test, self.seed, self.group, self.near):
            widget.blockSignals(False)
