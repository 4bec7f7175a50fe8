"""The dataset panel's augmentation preview: augmented views of one image, as the model would see them in
training, made by a worker job with the model's own preprocessing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QSize, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.config import AUGMENT_PRESETS
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.errors import UserError
from desktop_tl.gui.widgets.thumbnails import pil_to_qimage
from desktop_tl.gui.worker import JobContext

PREVIEW_JOB = "augment-preview"
PREVIEW_COUNT = 6
PREVIEW_SIZE = 128
_DEFAULT_DATA_CONFIG = {
    "input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.875,
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
}


# --------------------------------------------------------------------------- worker-side jobs
# These functions run on the engine thread: they compute and return data, never touch widgets.


@lru_cache(maxsize=16)
def model_preprocessing(model_name: str | None, image_size: int | None) -> Preprocessing:
    """The preprocessing of timm's `model_name` (built on the meta device: no weights, no memory).

    Falls back to 224 px, bicubic, ImageNet mean/std when no model is chosen or it cannot be built.
    """
    cfg = _DEFAULT_DATA_CONFIG
    if model_name:
        try:
            from desktop_tl.core.models.structure import build, data_config

            cfg = data_config(build(model_name, meta=True))
        except Exception:  # noqa: BLE001 - an unknown or exotic model only loses its exact preview
            cfg = _DEFAULT_DATA_CONFIG
    return Preprocessing.from_data_config(cfg, image_size)


@dataclass(frozen=True)
class PreviewResult:
    """Augmented views of one image."""

    path: Path
    preset: str
    views: list[Image.Image]


def preview_job(path: Path, preset: str, model_name: str | None, image_size: int | None,
                count: int = PREVIEW_COUNT, seed: int = 0) -> Callable[[JobContext], PreviewResult]:
    """A job that makes `count` augmented views of `path` as training would see them."""
    def run(ctx: JobContext) -> PreviewResult:
        from desktop_tl.core.data.imageio import ImageLoadError, load_image
        from desktop_tl.core.data.transforms import augmentation_preview

        try:
            image = load_image(path)
        except ImageLoadError as exc:
            raise UserError(f"{path.name} cannot be previewed: {exc.reason}.", "Pick another image.") from exc
        prep = model_preprocessing(model_name, image_size)
        return PreviewResult(path, preset, augmentation_preview(image, prep, preset, count, seed))
    return run


class AugmentationPreview(QWidget):
    """Preset selector and the augmented views of the chosen image."""

    sig_requested = Signal(object, str)
    """(image path, preset) the user wants to see."""

    def __init__(self, preset: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self.preset = QComboBox(self)
        self.preset.addItems(AUGMENT_PRESETS)
        self.preset.setCurrentText(preset if preset in AUGMENT_PRESETS else "light")
        self.preset.setToolTip("none: resize and crop only; light: random crops and flips; "
                               "strong: also vertical flips, colour and geometry changes.")
        self.show_button = QPushButton("Show", self)
        self.show_button.setObjectName("previewButton")
        self.show_button.setEnabled(False)
        self.caption = QLabel("Click an image to see how training augments it.", self)
        self.caption.setWordWrap(True)
        self.views = QListWidget(self)
        self.views.setObjectName("augmentationViews")
        self.views.setViewMode(QListView.ViewMode.IconMode)
        self.views.setIconSize(QSize(PREVIEW_SIZE, PREVIEW_SIZE))
        self.views.setResizeMode(QListView.ResizeMode.Adjust)
        self.views.setMovement(QListView.Movement.Static)
        self.views.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        row = QHBoxLayout()
        row.addWidget(QLabel("Augmentation", self))
        row.addWidget(self.preset, 1)
        row.addWidget(self.show_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.caption)
        layout.addWidget(self.views, 1)
        self.show_button.clicked.connect(self.request)
        self.preset.currentTextChanged.connect(lambda _: self.request())

    def set_image(self, path: Path | None) -> None:
        """Choose the image to augment and ask for its preview."""
        self.path = path
        self.show_button.setEnabled(path is not None)
        if path is None:
            self.views.clear()
            self.caption.setText("Click an image to see how training augments it.")
        else:
            self.request()

    def request(self) -> None:
        """Ask for views of the current image with the current preset."""
        if self.path is not None:
            self.sig_requested.emit(self.path, self.preset.currentText())

    def show_views(self, result: PreviewResult) -> None:
        """Show the augmented views."""
        self.views.clear()
        for number, view in enumerate(result.views, start=1):
            item = QListWidgetItem(QIcon(QPixmap.fromImage(pil_to_qimage(view))), f"#{number}")
            self.views.addItem(item)
        size = result.views[0].size if result.views else (0, 0)
        self.caption.setText(f"{result.path.name}: {len(result.views)} random '{result.preset}' views at "
                             f"{size[0]}×{size[1]} px, as the model sees them in training.")
