"""The training panel's settings: recipe (Quick, Balanced, Best or Custom), orientation, device, the custom
recipe's fields, and the plan a run follows. Reads and writes AppState's training settings."""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QComboBox, QFrame, QGridLayout, QGroupBox, QLabel, QScrollArea, QWidget

from desktop_tl.core.config import BUDGET_PRESETS, TrainConfig, setting_info
from desktop_tl.gui.state import AppState
from desktop_tl.gui.training.custom_form import CustomSettingsForm

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
REFERRAL_CHOICES = (  # (label, refer_target)
    ("Off: answer every image", 0.0),
    ("Keep errors within 1%", 0.01),
    ("Keep errors within 2%", 0.02),
    ("Keep errors within 5%", 0.05),
    ("Keep errors within 10%", 0.10),
)
PLAN_LINES = 4  # the plan shows in this many lines and scrolls beyond them

PLAN_HINT = ("The automatic recipe plans the run when you press Start, from your images and the speed of this "
             "computer: a linear probe first, then fine-tuning of every layer while the time budget allows (or, "
             "when a small network trained from scratch does better beyond the noise, that network, or the average "
             "of the two). It stops sooner when "
             "the validation images stop improving.")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class TrainingSettings(QGroupBox):
    """Recipe, orientation, device and custom fields; changes go to `AppState.update_config`."""

    def __init__(self, state: AppState, parent: QWidget | None = None, *, detect: bool = True) -> None:
        super().__init__("Training", parent)
        self.state = state
        self.plan_shown = False          # a run's plan is on display (not the hint)
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
        self.referral = QComboBox()
        self.referral.setObjectName("referralTarget")
        for label, target in REFERRAL_CHOICES:
            self.referral.addItem(label, target)
        self.referral.setToolTip("Refer to a person the images the model is unsure of, so that among the images it "
                                 "answers the error stays within this rate (checked on held-out images with 95% "
                                 "confidence). A stricter rate answers fewer images. Images unlike the training "
                                 "images are flagged as unfamiliar either way.")
        self.plan_label = QLabel(PLAN_HINT, wordWrap=True)
        self.plan_label.setObjectName("planLabel")
        self.plan_label.setStyleSheet("color: #444444;")
        self.plan_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plan_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # The plan arrives while training starts and may run to many lines: it scrolls inside a fixed height, so
        # the window never re-lays out its plots mid-run (a re-layout costs ~90 ms of frozen window).
        self.plan_area = QScrollArea(widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        self.plan_area.setObjectName("planArea")
        self.plan_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.plan_area.setWidget(self.plan_label)
        self.plan_area.setFixedHeight(PLAN_LINES * self.plan_label.fontMetrics().lineSpacing() + 4)
        self.custom = CustomSettingsForm()
        # the controls other code and tests reach by name
        self.epochs, self.batch_size, self.lr, self.image_size, self.augment = (
            self.custom.controls[name] for name in ("epochs", "batch_size", "lr", "image_size", "augment"))
        self.device = QComboBox()
        self.device.setToolTip(setting_info(TrainConfig, "device")["help"].capitalize())
        if detect:
            self.refresh_devices()
        else:   # the window shows first; `refresh_devices` runs once the engine (torch) is loaded
            self.device.addItem("auto (detecting…)", "auto")
            self.device.addItem("cpu", "cpu")
        self._lay_out()
        self.custom.sig_changed.connect(self._write_config)
        self.device.currentIndexChanged.connect(self._write_config)
        self.orientation.currentIndexChanged.connect(self._write_config)
        self.referral.currentIndexChanged.connect(self._write_config)
        self.recipe.currentIndexChanged.connect(self._write_recipe)
        self.state.sig_config_changed.connect(lambda _config: self.load_from_state())
        self.load_from_state()

    def _lay_out(self) -> None:
        for box in (self.recipe, self.orientation, self.device, self.referral):    # long choices are elided, not widening the panel
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(16)
        grid = QGridLayout(self)
        grid.addWidget(QLabel("Recipe"), 0, 0)
        grid.addWidget(self.recipe, 0, 1)
        grid.addWidget(QLabel("Orientation"), 0, 2)
        grid.addWidget(self.orientation, 0, 3)
        grid.addWidget(QLabel("Device"), 1, 0)
        grid.addWidget(self.device, 1, 1)
        grid.addWidget(QLabel("Refer to a person"), 1, 2)
        grid.addWidget(self.referral, 1, 3)
        self.custom_box = self.custom
        for column in (1, 3):
            grid.setColumnStretch(column, 1)
        grid.addWidget(self.custom_box, 2, 0, 1, 4)
        grid.addWidget(self.plan_area, 3, 0, 1, 4)
        self.grid = grid

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

    def load_from_state(self) -> None:
        """Show the recipe and settings of `state.config` (after a project was opened)."""
        cfg = self.state.config
        self.custom.show_config(cfg)
        widgets = (self.device, self.orientation, self.referral)
        for widget in widgets:
            widget.blockSignals(True)
        try:
            self.device.setCurrentIndex(max(0, self.device.findData(cfg.device)))
            self.orientation.setCurrentIndex(max(0, self.orientation.findData(cfg.orientation)))
            self._show_referral(cfg.refer_target)
        finally:
            for widget in widgets:
                widget.blockSignals(False)
        self._show_recipe()

    def _show_referral(self, target: float) -> None:
        """Select the referral target (one that is no choice, set from the CLI, gets its own entry)."""
        found = next((i for i in range(self.referral.count()) if abs(self.referral.itemData(i) - target) < 1e-9), -1)
        if found < 0:
            self.referral.addItem(f"Keep errors within {target:.1%}", target)
            found = self.referral.count() - 1
        self.referral.setCurrentIndex(found)

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
        if not self.plan_shown:
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
        self.state.update_config(**self.custom.values(), device=self.device.currentData() or "auto",
                                 orientation=self.orientation.currentData() or "auto",
                                 refer_target=float(self.referral.currentData() or 0.0))

    def show_plan(self, lines: tuple[str, ...] | None) -> None:
        """The plan a run follows (None: back to the hint of the chosen recipe)."""
        self.plan_shown = lines is not None
        if lines is None:
            self._show_recipe()
        else:
            self.plan_label.setText("<br>".join(_escape(line) for line in lines))
