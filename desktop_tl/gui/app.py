"""Start the desktop window: `desktop-tl` with no arguments, or `python -m desktop_tl.gui.app`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

NO_DISPLAY_STATUS = 2


def display_problem() -> str | None:
    """Why no window can open here (Linux without a display), or None when one can."""
    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    return ("desktop-tl: no display found (DISPLAY and WAYLAND_DISPLAY are not set), so the window cannot open.\n"
            "  What to do: run it from a desktop session, or use the command line instead, e.g. `desktop-tl demo`\n"
            "  (see `desktop-tl --help`). To force a Qt platform, set QT_QPA_PLATFORM (e.g. offscreen or xcb).")


def _window_icon():
    from PySide6.QtGui import QIcon

    from desktop_tl.core.paths import resource_path

    folder = resource_path("icons")
    if not folder.is_dir():
        return None
    for name in ("app.svg", "app.png", "desktop_tl.svg", "desktop_tl.png"):
        if (folder / name).is_file():
            return QIcon(str(folder / name))
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".svg", ".png", ".ico"))
    return QIcon(str(files[0])) if files else None


def has_real_display() -> bool:
    """True where a window would be seen by a person (not offscreen, not a headless Linux)."""
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run_app(argv: Sequence[str] | None = None, run_dir: Path | None = None) -> int:
    """Create the QApplication, show the main window (on `run_dir` if given) and run the event loop."""
    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return NO_DISPLAY_STATUS
    from PySide6.QtWidgets import QApplication

    from desktop_tl import __version__
    from desktop_tl.gui.main_window import APPLICATION, ORGANISATION, MainWindow

    app = QApplication.instance() or QApplication(list(argv) if argv is not None else sys.argv)
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("desktop_tl")
    app.setApplicationVersion(__version__)
    icon = _window_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    window = MainWindow()
    window.show()
    if run_dir is not None:
        window.show_run(Path(run_dir))
    status = app.exec()
    window.controller.shutdown()   # the engine thread must end before Qt tears the window down
    return status


if __name__ == "__main__":
    raise SystemExit(run_app())
