"""Render the application icon from resources/icons/desktop_tl.svg into every format the platforms want.

    python packaging/make_icons.py

Writes, next to the SVG:
- desktop_tl_{16,32,48,64,128,256,512}.png   Linux hicolor theme sizes and the window icon
- desktop_tl.ico                                Windows (EXE icon=; 16-256 px inside)
- desktop_tl.icns                               macOS (BUNDLE icon=)

The PNGs are rendered with Qt's own SVG renderer (PySide6's QtSvg, part of PySide6-Essentials),
the .ico and .icns are assembled from those PNGs with Pillow. The outputs are committed, so a
build never needs to run this; run it again after editing the SVG.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICON_DIR = Path(__file__).resolve().parents[1] / "resources" / "icons"
SVG = ICON_DIR / "desktop_tl.svg"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def png_path(size: int) -> Path:
    """Where the PNG of `size` pixels lives."""
    return ICON_DIR / f"desktop_tl_{size}.png"


def render_pngs() -> list[Path]:
    """Render the SVG at each size with QSvgRenderer (antialiased, transparent background)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841 - Qt needs one
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG} is not a valid SVG file")
    written = []
    for size in PNG_SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        if not image.save(str(png_path(size)), "PNG"):
            raise SystemExit(f"could not write {png_path(size)}")
        written.append(png_path(size))
    return written


def write_ico_icns() -> list[Path]:
    """Windows .ico (several sizes in one file) and macOS .icns, both with Pillow."""
    from PIL import Image

    big = Image.open(png_path(512)).convert("RGBA")
    ico = ICON_DIR / "desktop_tl.ico"
    # Pillow resizes the 512 px image down for each entry; the small sizes come from their own renders.
    big.save(ico, format="ICO", sizes=[(s, s) for s in ICO_SIZES],
             append_images=[Image.open(png_path(s)).convert("RGBA") for s in PNG_SIZES if s in ICO_SIZES])
    icns = ICON_DIR / "desktop_tl.icns"
    big.save(icns, format="ICNS",
             append_images=[Image.open(png_path(s)).convert("RGBA") for s in PNG_SIZES if s != 512])
    return [ico, icns]


def main() -> int:
    """Render everything and list what was written."""
    for path in render_pngs() + write_ico_icns():
        print(f"wrote {path.relative_to(ICON_DIR.parents[1])} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
