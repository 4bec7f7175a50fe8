"""A larger view of one picture (a mistake, a thumbnail): the image or its heat map at up to 640 px, with its
caption, in a small non-modal window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from desktop_tl.gui.widgets.item_models import pixmap_from_pil

LARGE = 640


class ImageViewer(QDialog):
    """Shows `picture` (a PIL image) when given, else the file at `path`, scaled to fit LARGE pixels."""

    def __init__(self, path: Path, caption: str, picture: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageViewer")
        self.setWindowTitle(Path(path).name)
        self.image = QLabel(self)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        pixmap = pixmap_from_pil(picture, LARGE) if picture is not None else self._from_file(Path(path))
        if pixmap is None:
            self.image.setText("The image cannot be read.")
        else:
            self.image.setPixmap(pixmap)
        text = QLabel(caption, self, wordWrap=True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 1)
        layout.addWidget(text)

    @staticmethod
    def _from_file(path: Path) -> QPixmap | None:
        from desktop_tl.core.data.imageio import ImageLoadError, load_image

        try:
            return pixmap_from_pil(load_image(path), LARGE)
        except (ImageLoadError, OSError):
            return None
