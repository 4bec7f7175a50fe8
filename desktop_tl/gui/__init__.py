"""The desktop window: thin Qt views over desktop_tl.core."""

from __future__ import annotations


def __getattr__(name: str):
    # `from desktop_tl.gui import MainWindow` without importing Qt for `import desktop_tl.gui` alone.
    if name == "MainWindow":
        from desktop_tl.gui.shell.main_window import MainWindow

        return MainWindow
    raise AttributeError(name)
