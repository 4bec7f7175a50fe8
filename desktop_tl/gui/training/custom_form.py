"""The Custom recipe's settings form, built from `TrainConfig`'s field metadata as the CLI builds its options:
one control per `core.config.custom_settings()` field, with its label, help, range and choices. A new setting is
one field in core/config.py; this form follows."""

from __future__ import annotations

from typing import Any, get_type_hints

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QGridLayout, QLabel, QWidget

from desktop_tl.core.config import TrainConfig, custom_settings, setting_info
from desktop_tl.gui.widgets.number_box import DecimalBox, NumberBox

PAIRS_PER_ROW = 3


def _control(kind: Any, info: dict[str, Any]) -> QWidget:
    """The control for one setting of type `kind` (bool, int, int | None, float, str with choices)."""
    if kind is bool:
        return QCheckBox()
    if info["choices"]:
        box = QComboBox()
        box.addItems(list(info["choices"]))
        return box
    low, high = info["bounds"]
    what = info["label"][:1].upper() + info["label"][1:]
    if kind is float:
        spin = DecimalBox(what, decimals=info["decimals"] or 2, minimum=low, maximum=high)
    else:                                  # int, or int | None where the lowest value (special) means None
        spin = NumberBox(what, minimum=int(low), maximum=int(high))
    if info["step"]:
        spin.setSingleStep(info["step"])
    if info["special"]:
        spin.setSpecialValueText(info["special"])
    if info["unit"]:
        spin.setSuffix(f" {info['unit']}")
    return spin


class CustomSettingsForm(QWidget):
    """Every Custom-recipe setting as a control; `show_config` fills them, `values` reads them back."""

    sig_changed = Signal()
    """The user changed a control."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("customSettings")
        self.kinds = {name: kind for name, kind in get_type_hints(TrainConfig).items() if name in custom_settings()}
        self.controls: dict[str, QWidget] = {}
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for i, name in enumerate(custom_settings()):
            info = setting_info(TrainConfig, name)
            control = _control(self._plain_kind(name), info)
            control.setObjectName(f"custom_{name}")
            control.setToolTip(info["help"][:1].upper() + info["help"][1:])
            self.controls[name] = control
            row, pair = divmod(i, PAIRS_PER_ROW)
            label = QLabel(info["label"][:1].upper() + info["label"][1:])
            label.setBuddy(control)
            grid.addWidget(label, row, 2 * pair)
            grid.addWidget(control, row, 2 * pair + 1)
            self._connect(control)
        for column in range(1, 2 * PAIRS_PER_ROW, 2):
            grid.setColumnStretch(column, 1)

    def _plain_kind(self, name: str) -> Any:
        """bool, int, float or str: the field's type without `| None`."""
        kind = self.kinds[name]
        return next((k for k in getattr(kind, "__args__", ()) if k is not type(None)), kind)

    def _connect(self, control: QWidget) -> None:
        if isinstance(control, QCheckBox):
            control.toggled.connect(self.sig_changed)
        elif isinstance(control, QComboBox):
            control.currentIndexChanged.connect(self.sig_changed)
        else:
            control.valueChanged.connect(self.sig_changed)

    def show_config(self, cfg: TrainConfig) -> None:
        """Show `cfg`'s custom settings (no sig_changed)."""
        for name, control in self.controls.items():
            value = getattr(cfg, name)
            control.blockSignals(True)
            try:
                if isinstance(control, QCheckBox):
                    control.setChecked(bool(value))
                elif isinstance(control, QComboBox):
                    control.setCurrentText(str(value))
                else:
                    control.setValue(value if value is not None else control.minimum())
            finally:
                control.blockSignals(False)

    def values(self) -> dict[str, Any]:
        """The settings as the controls show them (the special lowest value of a setting that may be None is
        None)."""
        values: dict[str, Any] = {}
        for name, control in self.controls.items():
            if isinstance(control, QCheckBox):
                values[name] = control.isChecked()
            elif isinstance(control, QComboBox):
                values[name] = control.currentText()
            else:
                value = control.value()
                may_be_none = type(None) in getattr(self.kinds[name], "__args__", ())
                values[name] = None if may_be_none and value == control.minimum() else value
        return values
