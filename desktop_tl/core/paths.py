"""Where desktop_tl keeps its own files: the model store and caches (never the user's data)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import platformdirs

APP_NAME = "desktop-tl"


def user_data_dir() -> Path:
    """Folder for the imported-weights store; `DESKTOP_TL_DATA_DIR` overrides it."""
    override = os.environ.get("DESKTOP_TL_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_cache_dir() -> Path:
    """Folder for rebuildable caches (decoded images, features); `DESKTOP_TL_CACHE_DIR` overrides it."""
    override = os.environ.get("DESKTOP_TL_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def resource_path(*parts: str) -> Path:
    """Path of a file shipped in `resources/` (demo images, icons)."""
    return Path(str(resources.files("desktop_tl.resources").joinpath(*parts)))
