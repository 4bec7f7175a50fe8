"""GUI test setup: isolated QSettings, no QThread left running, a tiny real-image dataset."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from desktop_tl.gui import worker as worker_module


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory, monkeypatch):
    """QSettings in a per-test INI folder, and a per-test home for default run folders."""
    folder = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(folder))
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    return folder


@pytest.fixture(autouse=True)
def no_thread_left(monkeypatch):
    """Fail any test that leaves an engine QThread running (after the test's own cleanup)."""
    controllers: list[worker_module.EngineController] = []
    original = worker_module.EngineController.__init__

    def tracking_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        controllers.append(self)

    monkeypatch.setattr(worker_module.EngineController, "__init__", tracking_init)
    yield controllers
    left = [c for c in controllers if c.thread.isRunning()]
    for controller in left:
        controller.shutdown()
    if left:
        pytest.fail(f"{len(left)} engine QThread(s) still running after the test; close the window "
                    "or call controller.shutdown()")


@pytest.fixture
def controller(qtbot):
    """A shared engine controller, shut down (thread joined) after the test."""
    from desktop_tl.gui.worker import EngineController

    engine = EngineController()
    yield engine
    assert engine.shutdown(), "the engine thread did not end"


@pytest.fixture
def app_state(qtbot):
    """A fresh AppState."""
    from desktop_tl.gui.state import AppState

    return AppState()


@pytest.fixture
def main_window(qtbot):
    """A MainWindow that never asks questions on close, closed (and its thread joined) after the test."""
    from desktop_tl.gui.shell.main_window import MainWindow

    window = MainWindow()
    window.ask_stop_running_job = lambda: True
    window.ask_save_changes = lambda before="quitting": "discard"
    qtbot.addWidget(window)
    yield window
    window.close()
    assert not window.controller.thread.isRunning()


def _crops(image: np.ndarray, count: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    crops = []
    for _ in range(count):
        top, left = rng.integers(0, height - size), rng.integers(0, width - size)
        crops.append(image[top:top + size, left:left + size])
    return crops


def make_tiny_dataset(root: Path, per_class: int = 8, size: int = 48) -> Path:
    """Two classes of small real PNG crops: a cat (skimage chelsea) and a coffee cup (skimage coffee)."""
    from skimage import data

    for name, image, seed in (("cat", data.chelsea(), 1), ("coffee", data.coffee(), 2)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, crop in enumerate(_crops(image, per_class, 3 * size, seed)):
            Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR).save(root / name / f"{name}_{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> Path:
    """Folder with cat/ and coffee/, 8 small real PNG images each (read-only: copy before changing)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "images")


@pytest.fixture(scope="session")
def tiny_index(tiny_images):
    """The imported DatasetIndex of `tiny_images`."""
    from desktop_tl.core.config import SplitConfig
    from desktop_tl.core.data.importer import import_dataset

    return import_dataset(tiny_images, SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0))


def _fast_config(state, **overrides) -> None:
    settings = dict(recipe="custom", model="efficientnet_lite0", weights="bundled", freeze="head", epochs=1, batch_size=4,
                    image_size=64, augment="none", num_workers=0, device="cpu")
    settings.update(overrides)
    state.update_config(**settings)


@pytest.fixture
def fast_config():
    """`fast_config(state, **overrides)`: quick training settings on `state.config`
    (bundled EfficientNet-Lite0, head only, 64 px, batch 4, 1 epoch, no loader processes)."""
    return _fast_config


@pytest.fixture(autouse=True)
def collect_qt_garbage_on_the_main_thread():
    """After each window test, collect its garbage here, on the main thread: a Qt object in a reference cycle
    collected later by another thread's allocation (the engine thread) is destroyed there and can deadlock."""
    yield
    gc.collect()
