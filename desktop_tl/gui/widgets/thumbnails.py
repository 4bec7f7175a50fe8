"""Thumbnails decoded on demand in a small thread pool, kept in a bounded cache.

Nothing is decoded until a view asks a model for an item's decoration: `ThumbnailCache.get`
returns the cached pixmap, or None after scheduling the decode. Pool threads only compute
a `QImage` (a plain pixel buffer, safe off the GUI thread); pixmaps are made on the GUI thread.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThread, QThreadPool, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap

from desktop_tl.core.data.imageio import ImageLoadError, load_image

THUMBNAIL_SIZE = 96


def pil_to_qimage(image: Image.Image) -> QImage:
    """A detached RGB888 QImage copy of a PIL image (any mode)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    data = rgb.tobytes("raw", "RGB")
    width, height = rgb.size
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def load_thumbnail(path: Path, size: int) -> QImage:
    """Decode `path` and fit it to `size` x `size`: shrunk, or a tiny image (a 28 px digit) enlarged by whole
    pixels so it can be seen (raises ImageLoadError or OSError)."""
    image = load_image(path)
    if max(image.size) * 2 <= size:
        factor = size // max(image.size)
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return pil_to_qimage(image)


def placeholder_pixmap(size: int, broken: bool = False) -> QPixmap:
    """A grey square shown while a thumbnail loads (with a red cross when it cannot load)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(225, 225, 225))
    if broken:
        painter = QPainter(pixmap)
        painter.setPen(QColor(200, 40, 40))
        painter.drawLine(size // 4, size // 4, 3 * size // 4, 3 * size // 4)
        painter.drawLine(3 * size // 4, size // 4, size // 4, 3 * size // 4)
        painter.end()
    return pixmap


class _Relay(QObject):
    """Carries decoded images from pool threads to the GUI thread (queued connection)."""

    sig_decoded = Signal(str, object)
    """(path key, QImage or None when the file could not be read)."""


class _DecodeTask(QRunnable):
    """Decode one file on a pool thread; emits through the relay, never touches widgets."""

    def __init__(self, relay: _Relay, path: Path, size: int) -> None:
        super().__init__()
        self.relay = relay          # a Python reference keeps the relay alive while the task runs
        self.path = path
        self.size = size

    def run(self) -> None:
        try:
            image: QImage | None = load_thumbnail(self.path, self.size)
        except (ImageLoadError, OSError):
            image = None
        self.relay.sig_decoded.emit(str(self.path), image)


class ThumbnailCache(QObject):
    """Bounded least-recently-used cache of thumbnails, filled lazily by a private thread pool."""

    sig_ready = Signal(str)
    """Path (as str) whose thumbnail became available (or is known to be unreadable)."""

    def __init__(self, size: int = THUMBNAIL_SIZE, capacity: int = 600, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.size = size
        self.capacity = capacity
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._broken: set[str] = set()
        self._pending: set[str] = set()
        self.placeholder = placeholder_pixmap(size)
        self.broken_pixmap = placeholder_pixmap(size, broken=True)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, min(2, QThread.idealThreadCount() - 1)))  # leave a core free
        self._pool.setExpiryTimeout(2000)
        self._relay = _Relay()
        self._relay.sig_decoded.connect(self._on_decoded)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    def get(self, path: Path) -> QPixmap | None:
        """The thumbnail of `path` if known; otherwise schedules its decode and returns None."""
        key = str(path)
        pixmap = self._pixmaps.get(key)
        if pixmap is not None:
            self._pixmaps.move_to_end(key)
            return pixmap
        if key in self._broken:
            return self.broken_pixmap
        if key not in self._pending:
            self._pending.add(key)
            self._pool.start(_DecodeTask(self._relay, Path(path), self.size))
        return None

    def pixmap_or_placeholder(self, path: Path) -> QPixmap:
        """What a view should draw now for `path`."""
        return self.get(path) or self.placeholder

    def clear(self) -> None:
        """Forget queued (not yet started) decodes and every cached thumbnail."""
        self._pool.clear()
        self._pending.clear()
        self._pixmaps.clear()
        self._broken.clear()

    def wait(self, timeout_ms: int = 10_000) -> bool:
        """Block until running decodes finish (for shutdown and tests)."""
        return self._pool.waitForDone(timeout_ms)

    @Slot()
    def shutdown(self) -> None:
        """Drop queued work and wait for running decodes; the pool threads then expire."""
        self._pool.clear()
        self._pool.waitForDone(10_000)

    @Slot(str, object)
    def _on_decoded(self, key: str, image: QImage | None) -> None:
        if key not in self._pending:
            return                  # cleared meanwhile
        self._pending.discard(key)
        if image is None or image.isNull():
            self._broken.add(key)
        else:
            self._pixmaps[key] = QPixmap.fromImage(image)
            while len(self._pixmaps) > self.capacity:
                self._pixmaps.popitem(last=False)
        self.sig_ready.emit(key)
