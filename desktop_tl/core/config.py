"""Plain configuration dataclasses shared by the CLI, the window and saved runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from desktop_tl.core.errors import UserError

AUGMENT_PRESETS = ("none", "light", "strong")
RECIPES = ("auto", "custom")
ORIENTATIONS = ("auto", "fixed", "free")
BUDGET_PRESETS = {"quick": 120.0, "balanced": 600.0, "best": 3600.0}   # seconds, upper bounds
DEFAULT_BUDGET_SECONDS = BUDGET_PRESETS["balanced"]
BUDGET_RANGE = (10.0, 7 * 24 * 3600.0)
DEVICES = ("auto", "cpu", "cuda", "mps")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass
class SplitConfig:
    """How a dataset is divided into train, validation and test splits."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    group_by_patient: bool = True

    def validate(self) -> None:
        """Raise UserError when the fractions leave nothing to train on."""
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}.",
                                "Use a fraction such as 0.15.")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise UserError("Validation and test fractions leave less than 10% of the images for training.",
                            "Lower --val-fraction or --test-fraction (0.15 each is a good start).")


@dataclass
class TrainConfig:
    """Everything that decides how a run trains; stored with every checkpoint.

    With `recipe` "auto" the run is planned from the data, the model, this machine's measured speed and
    `budget` (seconds): see core.training.plan; freeze, epochs, lr, augmentation, image size, class
    weighting, label smoothing, layer decay and early stopping then come from the plan. "custom" trains
    with exactly the settings below.
    """

    model: str = "efficientnet_lite0"
    weights: str = "bundled"
    recipe: str = "auto"
    budget: float = DEFAULT_BUDGET_SECONDS
    orientation: str = "auto"      # auto: decided on validation; fixed: never flip or rotate; free: flips and rotations
    freeze: str = "head"
    epochs: int = 8
    batch_size: int = 0            # 0: automatic (the largest that fits on a GPU; see core.tuning)
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    class_weighted: bool = False
    early_stopping_patience: int = 0
    layer_decay: float = 1.0
    image_size: int | None = None
    augment: str = "light"
    device: str = "auto"
    seed: int = 0
    num_workers: int = -1
    decode_cache: bool = True      # decode and resize each image once into a memory-mapped cache
    feature_cache: bool = True     # head-only without augmentation: backbone features computed once
    compile: bool = False          # torch.compile the model (worth it on a GPU for long runs)
    memory_format: str = "auto"    # "auto" (measured on a CPU, channels_last on CUDA), "channels_last", "contiguous"

    def validate(self) -> None:
        """Raise UserError for settings that cannot work."""
        if self.recipe not in RECIPES:
            raise UserError(f"Unknown recipe {self.recipe!r}.", f"Choose one of {', '.join(RECIPES)}.")
        if not BUDGET_RANGE[0] <= self.budget <= BUDGET_RANGE[1]:
            raise UserError(f"The time budget must be between 10 seconds and a week, got {self.budget:g} s.",
                            "Use quick (2 min), balanced (10 min) or best (60 min).")
        if self.orientation not in ORIENTATIONS:
            raise UserError(f"Unknown orientation setting {self.orientation!r}.", f"Choose one of {', '.join(ORIENTATIONS)}.")
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}.", "Use --epochs 5, for example.")
        if self.batch_size < 0:
            raise UserError(f"--batch-size must be a positive number or auto, got {self.batch_size}.",
                            "Use --batch-size 32, for example, or --batch-size auto.")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}.", "Use --lr 0.001 for head training.")
        if self.augment not in AUGMENT_PRESETS:
            raise UserError(f"Unknown augmentation {self.augment!r}.", f"Choose one of {', '.join(AUGMENT_PRESETS)}.")
        if self.device not in DEVICES:
            raise UserError(f"Unknown device {self.device!r}.", f"Choose one of {', '.join(DEVICES)}.")
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            raise UserError(f"--image-size must be between 32 and 1024, got {self.image_size}.", "Leave it out to use the model's own size.")
        if self.memory_format not in MEMORY_FORMATS:
            raise UserError(f"Unknown memory format {self.memory_format!r}.", f"Choose one of {', '.join(MEMORY_FORMATS)}.")
        if not 0 < self.layer_decay <= 1:
            raise UserError(f"Layer-wise learning-rate decay must be in (0, 1], got {self.layer_decay}.", "Use 1 to switch it off, or 0.7.")


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
