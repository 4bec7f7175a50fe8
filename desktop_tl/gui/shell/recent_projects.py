"""File > Open recent: the project files opened or saved lately, newest first, kept in the app's settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, Slot
from PySide6.QtWidgets import QMenu

MAX_RECENT = 8
_KEY = "recentProjects"


def settings_list(settings: QSettings, key: str) -> list[str]:
    """The list of strings stored under `key` (an INI file gives one item back as a plain string)."""
    value = settings.value(key, [])
    items = [value] if isinstance(value, str) else list(value or [])
    return [item for item in items if isinstance(item, str) and item]


class RecentProjects:
    """The recent-projects list and its menu (refilled each time the menu opens)."""

    def __init__(self, menu: QMenu, settings: Callable[[], QSettings], open_project: Callable[[Path], object]) -> None:
        self.menu, self.settings, self.open_project = menu, settings, open_project
        menu.aboutToShow.connect(self.fill)
        self.fill()

    def paths(self) -> list[Path]:
        """Recently opened or saved project files, newest first."""
        return [Path(p) for p in settings_list(self.settings(), _KEY)]

    def remember(self, path: Path) -> None:
        """Put `path` first in the list."""
        recent = [str(path.resolve())] + [str(p) for p in self.paths() if p.resolve() != path.resolve()]
        self.settings().setValue(_KEY, recent[:MAX_RECENT])
        self.fill()

    @Slot()
    def fill(self) -> None:
        """Rebuild the menu from the list (missing files are shown disabled)."""
        self.menu.clear()
        recent = self.paths()
        for path in recent:
            action = self.menu.addAction(path.name)
            action.setToolTip(str(path))
            action.setStatusTip(str(path))
            action.setEnabled(path.is_file())
            action.triggered.connect(lambda _checked=False, p=path: self.open_project(p))
        if not recent:
            self.menu.addAction("No recent projects").setEnabled(False)
        else:
            self.menu.addSeparator()
            self.menu.addAction("Clear list").triggered.connect(self.clear)

    @Slot()
    def clear(self) -> None:
        """Forget every recent project."""
        self.settings().remove(_KEY)
        self.fill()
