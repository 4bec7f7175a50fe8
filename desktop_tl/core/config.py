"""Plain configuration dataclasses shared by the CLI, the window and saved runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from desktop_tl.core.errors import SettingError, UserError

AUGMENT_PRESETS = ("none", "light", "strong")
RECIPES = ("auto", "custom")
ORIENTATIONS = ("auto", "fixed", "free")
BUDGET_PRESETS = {"quick": 120.0, "balanced": 600.0, "best": 3600.0}   # seconds, upper bounds
DEFAULT_BUDGET_SECONDS = BUDGET_PRESETS["balanced"]
BUDGET_RANGE = (10.0, 7 * 24 * 3600.0)
DEVICES = ("auto", "cpu", "cuda", "mps")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def setting(default: Any, label: str, help: str, *, choices: tuple[str, ...] | None = None, flag: str | None = None,
            recipe_decides: bool = False, cli: bool = True, custom: bool | None = None,
            bounds: tuple[float, float] | None = None, step: float | None = None, decimals: int | None = None,
            special: str | None = None, unit: str | None = None) -> Any:
    """A settings field with what the faces need to offer it: `label` (how people call it, also in errors),
    `help`, `choices`, the command-line `flag` (default: the field name with dashes), whether the automatic
    recipe decides it (`recipe_decides`: the CLI's custom-recipe options), whether the CLI offers it, and for
    the window's Custom form whether it is there (`custom`, default `recipe_decides`), the range a control
    offers (`bounds`, `step`, `decimals`, `unit`) and the words for its lowest value (`special`: 0 or None
    means "auto", "off", ...)."""
    return field(default=default, metadata={"label": label, "help": help, "choices": choices, "flag": flag,
                                            "recipe_decides": recipe_decides, "cli": cli,
                                            "custom": recipe_decides if custom is None else custom,
                                            "bounds": bounds, "step": step, "decimals": decimals,
                                            "special": special, "unit": unit})


def setting_info(cls: type, name: str) -> dict[str, Any]:
    """The metadata of one settings field (see `setting`)."""
    return next(f.metadata for f in fields(cls) if f.name == name)


def custom_settings() -> tuple[str, ...]:
    """The TrainConfig fields the Custom recipe takes from the user, in their order (the window's Custom form)."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata["custom"])


@dataclass(frozen=True)
class SplitConfig:
    """How a dataset is divided into train, validation and test splits."""

    val_fraction: float = setting(0.15, "validation fraction", "share of each class for validation")
    test_fraction: float = setting(0.15, "test fraction", "share of each class for the test split")
    seed: int = setting(0, "seed", "seed of the split and of training")
    group_by_patient: bool = setting(True, "keep patients together",
                                     "keep each patient (DICOM PatientID, CSV group column) in one split", cli=False)
    group_near_duplicates: bool = setting(False, "keep near duplicates together",
                                          "keep images that show the same picture (re-saved, resized, cropped "
                                          "slightly) in one split")

    def validate(self) -> None:
        """Raise SettingError when the fractions leave nothing to train on."""
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise SettingError(name, f"The {setting_info(SplitConfig, name)['label']} must be between 0 and 1, "
                                         f"got {value}.", "Use a fraction such as 0.15.")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise SettingError("val_fraction", "Validation and test take 90% or more of each class, leaving less "
                                               "than 10% of the images for training.",
                               "Lower the validation or test fraction (0.15 each is a good start).")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a run trains; stored with every checkpoint.

    With `recipe` "auto" the run is planned from the data, the model, this machine's measured speed and
    `budget` (seconds): see core.training.plan; the settings marked `recipe_decides` then come from the plan.
    "custom" trains with exactly the settings given. Each field carries its label and help for the window
    and the command line (see `setting`): a new setting is one field.
    """

    model: str = setting("efficientnet_lite0", "model", "architecture (see `desktop-tl models`)")
    weights: str = setting("bundled", "weights", "bundled | hf | hf:REPO | imported:ID | PATH | none")
    recipe: str = setting("auto", "recipe", "auto: plan the run from the data, the model, this machine's speed and "
                          "the budget; custom: train with the settings given", choices=RECIPES)
    budget: float = setting(DEFAULT_BUDGET_SECONDS, "time budget", "time the automatic recipe may take at most: quick "
                            "(2 min), balanced (10 min, default), best (60 min) or a duration such as 20m or 1h30m; "
                            "it stops sooner when validation stops improving")
    orientation: str = setting("auto", "orientation", "automatic recipe: may images be flipped and turned? auto: "
                               "decided on the validation split; fixed: never (e.g. chest films); free: flips and "
                               "90-degree rotations (e.g. microscopy)", choices=ORIENTATIONS)
    freeze: str = setting("head", "layers that train", "head (classifier only) | last:N | all (full fine-tune) | "
                          "modules:NAME,NAME", recipe_decides=True, custom=False)   # the Layers panel sets it
    epochs: int = setting(8, "number of epochs", "planned total number of epochs", recipe_decides=True,
                          bounds=(1, 1000))
    batch_size: int = setting(0, "batch size", "images per optimizer step; auto (0): the recipe's choice, or the "
                              "largest that fits on the GPU", custom=True, bounds=(0, 4096), special="auto")
    lr: float = setting(1e-3, "learning rate", "peak learning rate (AdamW, warm-up then cosine)", recipe_decides=True,
                        bounds=(1e-5, 1.0), step=1e-4, decimals=5)
    weight_decay: float = setting(0.05, "weight decay", "AdamW weight decay (not on norms and biases)",
                                  recipe_decides=True, bounds=(0.0, 1.0), step=0.01, decimals=3)
    warmup_epochs: float = setting(1.0, "warm-up epochs", "epochs of linear learning-rate warm-up",
                                   recipe_decides=True, bounds=(0.0, 100.0), step=0.5, decimals=1)
    label_smoothing: float = setting(0.1, "label smoothing", "label smoothing of the training loss",
                                     recipe_decides=True, bounds=(0.0, 0.5), step=0.05, decimals=2)
    class_weighted: bool = setting(False, "class-weighted loss", "weight the loss against class imbalance",
                                   recipe_decides=True)
    early_stopping_patience: int = setting(0, "early stopping", "stop after this many epochs without a better "
                                           "validation loss (0: off)", flag="early-stopping", recipe_decides=True,
                                           bounds=(0, 1000), special="off")
    layer_decay: float = setting(1.0, "layer-wise learning-rate decay", "learning-rate factor per block towards the "
                                 "input (e.g. 0.7; 1: off)", recipe_decides=True, bounds=(0.05, 1.0), step=0.05,
                                 decimals=2)
    image_size: int | None = setting(None, "image size", "input size in pixels (default: the model's own)",
                                     recipe_decides=True, bounds=(0, 1024), step=32, special="model default",
                                     unit="px")
    augment: str = setting("light", "augmentation", "augmentation preset", choices=AUGMENT_PRESETS,
                           recipe_decides=True)
    refer_target: float = setting(0.05, "referral target", "refer the images the model is unsure of to a person, "
                                  "so that the error among the images it answers stays at or below this rate "
                                  "(checked on held-out images with 95% confidence; 0: answer every image)")
    device: str = setting("auto", "device", "where to train", choices=DEVICES)
    seed: int = setting(0, "seed", "seed of the split and of training", cli=False)   # the split's --seed sets it
    num_workers: int = setting(-1, "loader workers", "data-loading processes (-1: from the cores)", flag="workers")
    decode_cache: bool = setting(True, "decoded-image cache", "decode and resize each image once into a "
                                 "memory-mapped cache")
    feature_cache: bool = setting(True, "feature cache", "head-only training without augmentation: backbone "
                                  "features computed once")
    compile: bool = setting(False, "torch.compile", "torch.compile the model when it pays for itself in this run "
                            "(GPU, long runs)")
    memory_format: str = setting("auto", "memory layout", "tensor layout: auto measures both once per model on a "
                                 "CPU (channels_last on a GPU)", choices=MEMORY_FORMATS)

    def validate(self) -> None:
        """Raise SettingError (naming the setting) for settings that cannot work."""
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise SettingError(f.name, f"Unknown {f.metadata['label']} {getattr(self, f.name)!r}.",
                                   f"Choose one of {', '.join(choices)}.")
        checks = (
            ("budget", BUDGET_RANGE[0] <= self.budget <= BUDGET_RANGE[1],
             f"must be between 10 seconds and a week, got {self.budget:g} s",
             "Use quick (2 min), balanced (10 min) or best (60 min)."),
            ("epochs", self.epochs >= 1, f"must be at least 1, got {self.epochs}", "Use 5, for example."),
            ("batch_size", self.batch_size >= 0, f"must be a positive number or auto, got {self.batch_size}",
             "Use 32, for example, or auto."),
            ("lr", self.lr > 0, f"must be positive, got {self.lr}", "Use 0.001 for head training."),
            ("image_size", self.image_size is None or 32 <= self.image_size <= 1024,
             f"must be between 32 and 1024, got {self.image_size}", "Leave it out to use the model's own size."),
            ("refer_target", 0 <= self.refer_target <= 0.5, f"must be between 0 and 0.5, got {self.refer_target}",
             "Use 0.05 to answer where the error stays within 5%, or 0 to answer every image."),
            ("layer_decay", 0 < self.layer_decay <= 1, f"must be in (0, 1], got {self.layer_decay}",
             "Use 1 to switch it off, or 0.7."),
        )
        for name, ok, problem, hint in checks:
            if not ok:
                label = setting_info(TrainConfig, name)["label"]
                raise SettingError(name, f"The {label} {problem}.", hint)


def parse_budget(text: str) -> float:
    """Seconds from "quick", "balanced", "best", "90s", "10m", "1h" or "1h30m"; UserError otherwise."""
    text = str(text).strip().lower()
    if text in BUDGET_PRESETS:
        return BUDGET_PRESETS[text]
    total, number = 0.0, ""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        for char in text:
            if char.isdigit() or char == ".":
                number += char
            elif char in units and number:
                total, number = total + float(number) * units[char], ""
            else:
                raise ValueError
        if number:
            total += float(number) * 60     # a bare number means minutes
    except ValueError:
        total = 0.0
    if not BUDGET_RANGE[0] <= total <= BUDGET_RANGE[1]:
        raise UserError(f"The time budget {text!r} is not a duration between 10 seconds and a week.",
                        "Use quick, balanced, best, or a duration such as 10m, 90s or 1h30m.")
    return total


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return asdict(obj)


_TYPE_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int | None": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
}


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, ignoring unknown keys and checking types.

    Raises UserError when a value has the wrong type (a hand-edited project file, say).
    """
    if not isinstance(data, dict):
        raise UserError(f"Expected a settings object for {cls.__name__}, found {type(data).__name__}.",
                        "Re-create the project or the run from the app.")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if not _TYPE_CHECKS[str(f.type)](value):
            raise UserError(f"Setting {f.name!r} has the wrong type ({type(value).__name__}: {value!r}).",
                            "Fix the value in the file or re-create it from the app.")
        kwargs[f.name] = float(value) if f.type == "float" else value
    return cls(**kwargs)
