"""Shared test setup: offscreen Qt, no network, isolated user folders."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
# Session-wide defaults so session-scoped fixtures never touch the real user folders.
_SESSION_DIRS = Path(tempfile.mkdtemp(prefix="desktop_tl_tests_"))
os.environ["DESKTOP_TL_DATA_DIR"] = str(_SESSION_DIRS / "data")
os.environ["DESKTOP_TL_CACHE_DIR"] = str(_SESSION_DIRS / "cache")
os.environ["HF_HUB_CACHE"] = str(_SESSION_DIRS / "hf")

import pytest

from helpers import copy_demo_subset


class NetworkBlocked(RuntimeError):
    """Raised when code under test tries to open a network connection."""


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _refuse(*args, **kwargs):
    raise NetworkBlocked("desktop_tl must never touch the network (socket connect attempted)")


def _local_only(real):
    """Let Unix-domain sockets through (DataLoader workers share tensors over them); refuse the rest."""

    def connect(sock, address, *args, **kwargs):
        if sock.family == getattr(socket, "AF_UNIX", None):
            return real(sock, address, *args, **kwargs)
        _refuse()

    return connect


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs with outgoing connections refused, so a hidden download fails loudly."""
    monkeypatch.setattr(socket.socket, "connect", _local_only(_real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _local_only(_real_connect_ex))
    monkeypatch.setattr(socket, "create_connection", _refuse)


@pytest.fixture(autouse=True)
def fixed_threads(monkeypatch):
    """Training keeps torch's threads in tests whatever else the machine runs: the exact-resume and same-seed
    tests compare weights to 1e-6 or bit for bit, and another thread count changes the order of floating-point
    sums. (core.training.cpu_share has its own tests, which override this fixture.)"""
    from desktop_tl.core.training.cpu_share import ThreadShare

    monkeypatch.setattr(ThreadShare, "adjust", lambda self: None)


# This machine's measured speeds and memory layouts (tuning.json), carried from test to test as from one run of
# the app to the next: a user's second run recalls them, and measuring them in every test would add minutes.
_SHARED_TUNING = _SESSION_DIRS / "shared-tuning.json"


@pytest.fixture(autouse=True)
def user_dirs(tmp_path_factory, monkeypatch):
    """Point the model store, caches and HF cache at empty per-test folders (the cache holding only the speeds
    measured by earlier tests; test_tuning empties it to test the measuring itself)."""
    from desktop_tl.core.training.tuning import TUNING_FILE

    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("DESKTOP_TL_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("DESKTOP_TL_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(base / "hf"))
    tuning = base / "cache" / TUNING_FILE
    if _SHARED_TUNING.is_file():
        tuning.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_SHARED_TUNING, tuning)
    yield base
    if tuning.is_file():
        shutil.copyfile(tuning, _SHARED_TUNING)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """4 classes x 10 real demo images."""
    return copy_demo_subset(tmp_path_factory.mktemp("small") / "data", 10)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_dataset) -> Path:
    """A finished 1-epoch head-only run of the bundled EfficientNet-Lite0 at 64 px (shared, read-only)."""
    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.events import Failed
    from desktop_tl.core.runs.folder import create_run
    from desktop_tl.core.training.run import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "run"
    config = TrainConfig(recipe="custom", epochs=1, batch_size=8, image_size=64, num_workers=0, augment="none")
    create_run(run_dir, small_dataset, config, SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=1))
    events = list(train_run(run_dir))
    assert not any(isinstance(e, Failed) for e in events), events[-1]
    return run_dir


@pytest.fixture(scope="session")
def exported_model(trained_run, tmp_path_factory) -> Path:
    """`trained_run`'s model as an ONNX file, exported from a copy beside it: the shared run itself stays
    unexported (tests of the window expect that), and the copy keeps its relative dataset path."""
    import shutil

    from desktop_tl.core.deploy.export import export_onnx

    copy = trained_run.with_name("run_exported")
    shutil.copytree(trained_run, copy)
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert export_onnx(copy, out).parity_ok
    return out
