"""Shared test setup: offscreen Qt, no network, isolated user folders."""

from __future__ import annotations

import os
import socket

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest


class NetworkBlocked(RuntimeError):
    """Raised when code under test tries to open a network connection."""


def _refuse(*args, **kwargs):
    raise NetworkBlocked("desktop_tl must never touch the network (socket connect attempted)")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs with outgoing connections refused, so a hidden download fails loudly."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)


@pytest.fixture(autouse=True)
def user_dirs(tmp_path_factory, monkeypatch):
    """Point the model store, caches and HF cache at empty per-test folders."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("DESKTOP_TL_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("DESKTOP_TL_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(base / "hf"))
    return base
