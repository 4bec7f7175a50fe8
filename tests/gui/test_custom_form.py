"""The Custom recipe's form is built from TrainConfig's field metadata: a control for every custom setting."""

from __future__ import annotations

from dataclasses import fields

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QSpinBox

from desktop_tl.core.config import TrainConfig, custom_settings, setting_info
from desktop_tl.gui.custom_form import CustomSettingsForm
from desktop_tl.gui.training_settings import TrainingSettings


def test_every_setting_the_recipe_decides_has_a_control_but_the_layers(qtbot):
    form = CustomSettingsForm()
    qtbot.addWidget(form)
    decided = {f.name for f in fields(TrainConfig) if setting_info(TrainConfig, f.name)["recipe_decides"]}
    assert set(form.controls) == (decided - {"freeze"}) | {"batch_size"} == set(custom_settings())
    kinds = {"class_weighted": QCheckBox, "augment": QComboBox, "lr": QDoubleSpinBox, "weight_decay": QDoubleSpinBox,
             "warmup_epochs": QDoubleSpinBox, "label_smoothing": QDoubleSpinBox, "layer_decay": QDoubleSpinBox,
             "epochs": QSpinBox, "batch_size": QSpinBox, "image_size": QSpinBox, "early_stopping_patience": QSpinBox}
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
