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
    assert _loaded_after("import desktop_tl.gui.main_window") == []


def test_constructing_the_window_loads_no_engine():
    # The catalog, layer tree and device list fill in after the window is shown.
    code = ("from PySide6.QtWidgets import QApplication\n"
            "from desktop_tl.gui.main_window import MainWindow\n"
            "app = QApplication([]); w = MainWindow()\n"
            "assert not w.model_browser.loaded and w.model_browser.table_model.rowCount() == 0\n")
    assert _loaded_after(code) == []


def test_models_fill_in_after_the_window_is_shown():
    code = ("import time\n"
            "from PySide6.QtWidgets import QApplication\n"
            "from desktop_tl.gui.main_window import MainWindow\n"
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
