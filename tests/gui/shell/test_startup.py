"""The window shows before the engine loads: importing it must not import torch or timm."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("torch", "timm", "torchvision", "desktop_tl.core.models.catalog", "desktop_tl.core.runs.checkpoint",
         "desktop_tl.core.training.run", "desktop_tl.core.deploy.export")


def _loaded_after(code: str) -> list[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # os._exit: skip tearing down the window's engine thread; only the imports are checked.
    done = subprocess.run([sys.executable, "-c", code + f"\nimport os, sys; print([m for m in {HEAVY!r} if m in sys.modules], flush=True); os._exit(0)"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return eval(done.stdout.strip().splitlines()[-1])


def test_importing_the_main_window_loads_no_engine():
    assert _loaded_after("import desktop_tl.gui.shell.main_window") == []


def test_constructing_the_window_loads_no_engine():
    # The catalog, layer tree and device list fill in after the window is shown.
    code = ("from PySide6.QtWidgets import QApplication\n"
            "from desktop_tl.gui.shell.main_window import MainWindow\n"
            "app = QApplication([]); w = MainWindow()\n"
            "assert not w.model_browser.loaded and w.model_browser.table_model.rowCount() == 0\n")
    assert _loaded_after(code) == []


def test_models_fill_in_after_the_window_is_shown():
    code = ("import time\n"
            "from PySide6.QtWidgets import QApplication\n"
            "from desktop_tl.gui.shell.main_window import MainWindow\n"
            "app = QApplication([]); w = MainWindow(); w.show()\n"
            "deadline = time.monotonic() + 100\n"
            "while not w.model_browser.loaded and time.monotonic() < deadline:\n"
            "    app.processEvents(); time.sleep(0.02)\n"
            "assert w.model_browser.table_model.rowCount() > 0\n"
            "assert w.freeze_tree.tree_model.head\n"
            "label = w.training_monitor.device.itemText(0)\n"
            "assert label.startswith('auto (') and 'detecting' not in label, label\n"
            "import os; os._exit(0)\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]


LDD_WITHOUT_XCB_HELPERS = """\
	linux-vdso.so.1 (0x00007ffd8a3f2000)
	libQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f2c1c000000)
	libxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f2c1bf00000)
	libxcb-icccm.so.4 => not found
	libxcb-keysyms.so.1 => not found
	libxkbcommon-x11.so.0 => not found
	libxcb-icccm.so.4 => not found
"""


def test_the_missing_x11_libraries_are_named_with_the_packages_to_install(monkeypatch, capsys):
    from desktop_tl.gui.shell import app

    assert app.missing_libraries(LDD_WITHOUT_XCB_HELPERS) == [
        "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxkbcommon-x11.so.0"]    # xcb-cursor is there
    assert [app.debian_package(n) for n in app.missing_libraries(LDD_WITHOUT_XCB_HELPERS)] == [
        "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0"]
    assert app.missing_libraries("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []

    monkeypatch.setattr(app.sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(app.subprocess, "run", lambda *a, **k: type("Done", (), {"stdout": LDD_WITHOUT_XCB_HELPERS}))
    assert app.run_app([]) == app.NO_DISPLAY_STATUS                 # before Qt could abort the process
    err = capsys.readouterr().err
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1, libxkbcommon-x11.so.0" in err
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0" in err and "Traceback" not in err
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")              # another platform: nothing to check
    assert app.xcb_problem() is None
