"""The Custom recipe's form is built from TrainConfig's field metadata: a control for every custom setting."""

from __future__ import annotations

from dataclasses import fields

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QLabel

from desktop_tl.core.config import TrainConfig, custom_settings, setting_info
from desktop_tl.gui.training.custom_form import CustomSettingsForm
from desktop_tl.gui.training.training_settings import TrainingSettings
from desktop_tl.gui.widgets.number_box import DecimalBox, NumberBox


def test_every_setting_the_recipe_decides_has_a_control_but_the_layers(qtbot):
    form = CustomSettingsForm()
    qtbot.addWidget(form)
    decided = {f.name for f in fields(TrainConfig) if setting_info(TrainConfig, f.name)["recipe_decides"]}
    assert set(form.controls) == (decided - {"freeze"}) | {"batch_size"} == set(custom_settings())
    kinds = {"class_weighted": QCheckBox, "augment": QComboBox, "lr": DecimalBox, "weight_decay": DecimalBox,
             "warmup_epochs": DecimalBox, "label_smoothing": DecimalBox, "layer_decay": DecimalBox,
             "epochs": NumberBox, "batch_size": NumberBox, "image_size": NumberBox, "early_stopping_patience": NumberBox}
    assert {name: type(control) for name, control in form.controls.items()} == kinds
    labels = {label.text() for label in form.findChildren(QLabel)}
    assert {"Weight decay", "Warm-up epochs", "Label smoothing", "Early stopping", "Class-weighted loss",
            "Layer-wise learning-rate decay"} <= labels
    assert "AdamW weight decay" in form.controls["weight_decay"].toolTip()


def test_the_form_shows_a_config_and_gives_back_what_the_user_set(qtbot):
    form = CustomSettingsForm()
    qtbot.addWidget(form)
    config = TrainConfig(recipe="custom", epochs=12, lr=3e-4, weight_decay=0.02, label_smoothing=0.0,
                         class_weighted=True, early_stopping_patience=3, layer_decay=0.7, image_size=None)
    form.show_config(config)
    assert form.values() == {name: getattr(config, name) for name in custom_settings()}
    assert form.controls["image_size"].text() == "model default" and form.controls["batch_size"].text() == "auto"
    assert form.controls["early_stopping_patience"].value() == 3
    with qtbot.waitSignal(form.sig_changed):
        form.controls["warmup_epochs"].setValue(2.5)
    form.controls["image_size"].setValue(160)
    form.controls["early_stopping_patience"].setValue(0)
    assert form.values()["warmup_epochs"] == 2.5 and form.values()["image_size"] == 160
    assert form.values()["early_stopping_patience"] == 0 and form.controls["early_stopping_patience"].text() == "off"


def test_the_training_panel_writes_every_custom_setting(qtbot, app_state):
    settings = TrainingSettings(app_state, detect=False)
    qtbot.addWidget(settings)
    app_state.set_recipe("custom")
    settings.custom.controls["weight_decay"].setValue(0.2)
    settings.custom.controls["class_weighted"].setChecked(True)
    settings.custom.controls["layer_decay"].setValue(0.8)
    assert (app_state.config.weight_decay, app_state.config.class_weighted) == (0.2, True)
    assert app_state.config.layer_decay == 0.8


def test_typing_works_in_every_number_field_of_the_window_and_a_value_out_of_range_says_so(qtbot, main_window):
    spin_boxes = main_window.findChildren(QAbstractSpinBox)
    assert spin_boxes and all(isinstance(box, (NumberBox, DecimalBox)) for box in spin_boxes)
    main_window.state.set_recipe("custom")
    controls = main_window.training_monitor.settings.custom.controls
    main_window.show()

    def typed(box, text: str) -> None:
        box.setFocus()
        box.selectAll()
        qtbot.keyClicks(box, text)
        qtbot.keyClick(box, Qt.Key.Key_Return)

    typed(controls["epochs"], "12")
    typed(controls["label_smoothing"], "0.15")
    typed(controls["weight_decay"], "0.25")
    config = main_window.state.config
    assert (config.epochs, config.label_smoothing, config.weight_decay) == (12, 0.15, 0.25)
    typed(controls["epochs"], "0")
    assert main_window.state.config.epochs == 12 and controls["epochs"].complaint.startswith("0 is out of range: ")
