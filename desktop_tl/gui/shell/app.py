"""Start the desktop window: `desktop-tl` with no arguments, or `python -m desktop_tl.gui.shell.app`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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


def missing_libraries(ldd_output: str) -> list[str]:
    """The shared libraries `ldd` reports as "not found", in its order."""
    return list(dict.fromkeys(re.findall(r"^\s*(\S+) => not found", ldd_output, flags=re.MULTILINE)))


def debian_package(library: str) -> str:
    """The Debian/Ubuntu package that usually holds `library` (libxcb-cursor.so.0 -> libxcb-cursor0)."""
    base, _, version = library.partition(".so.")
    version = version.split(".")[0]
    return (base + ("-" if base[-1:].isdigit() else "") + version).lower()


def xcb_problem() -> str | None:
    """Why Qt's X11 (xcb) platform plugin would fail to load here, naming the missing libraries; None when it
    would load, when another platform is used, or when that cannot be checked. Qt itself only says that
    "no Qt platform plugin could be initialized" and aborts."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb" \
            or os.environ.get("WAYLAND_DISPLAY") or not os.environ.get("DISPLAY") or not shutil.which("ldd"):
        return None
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if not plugin.is_file():
        return None
    try:
        output = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    missing = missing_libraries(output)
    if not missing:
        return None
    return (f"desktop-tl: the window cannot open: Qt's X11 plugin needs {', '.join(missing)}, which this machine "
            f"lacks.\n  What to do: install them, e.g. `sudo apt install {' '.join(map(debian_package, missing))}` "
            "(Debian/Ubuntu), or use the command line (`desktop-tl --help`).")


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
    problem = display_problem() or xcb_problem()
    if problem:
        print(problem, file=sys.stderr)
        return NO_DISPLAY_STATUS
    from PySide6.QtWidgets import QApplication

    from desktop_tl import __version__
    from desktop_tl.gui.shell.main_window import APPLICATION, ORGANISATION, MainWindow

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
