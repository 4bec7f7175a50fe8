"""The engine's heavy modules (torch, timm, the catalog) imported on a background thread once the window is
shown, so that the window opens in about a second (tests/gui/test_startup.py)."""

from __future__ import annotations

import importlib
import threading

# Engine modules the panels need once the window is up. Importing them (torch, timm, the catalog)
# takes seconds, so it happens on a background thread after the window is first shown; nothing
# that imports torch may run when this module is imported (tests/gui/test_startup.py).
_ENGINE_MODULES = ("torch", "timm", "desktop_tl.core.models.catalog", "desktop_tl.core.models.freeze",
                   "desktop_tl.core.models.store", "desktop_tl.core.training.run")
engine_loaded = threading.Event()
_engine_lock = threading.Lock()
_engine_thread: threading.Thread | None = None


def _import_engine() -> None:
    try:
        for name in _ENGINE_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the panel that needs it reports the error on the GUI thread
                pass
    finally:
        engine_loaded.set()


def start_engine_import() -> None:
    """Import the engine modules on a background thread (once per process)."""
    global _engine_thread
    with _engine_lock:
        if _engine_thread is None:
            _engine_thread = threading.Thread(target=_import_engine, name="engine-import", daemon=True)
            _engine_thread.start()
