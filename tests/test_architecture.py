"""Architecture rules: the engine never imports Qt, and the tests cannot reach the network."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "desktop_tl" / "core"
FORBIDDEN = ("PySide6", "pyqtgraph", "desktop_tl.gui", "shiboken6")


def _imported_names(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_source_never_imports_qt():
    offenders = {}
    for path in CORE.rglob("*.py"):
        bad = {n for n in _imported_names(path.read_text()) if n.split(".")[0] in FORBIDDEN or n.startswith("desktop_tl.gui")}
        if bad:
            offenders[path.name] = bad
    assert not offenders, offenders


def test_importing_every_core_module_loads_no_qt():
    modules = [".".join(("desktop_tl", *p.relative_to(CORE.parent).with_suffix("").parts))
               for p in sorted(CORE.rglob("*.py")) if p.stem != "__init__"]
    assert "desktop_tl.core.training.run" in modules and "desktop_tl.core.deploy.predict" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


GUI_ROOMS = {"shell", "widgets", "models", "dataset", "layers", "training", "evaluation", "labelling", "export",
             "monitor"}


def test_the_window_is_in_rooms_and_its_tests_follow():
    gui = CORE.parent / "gui"
    loose = {p.name for p in gui.glob("*.py")} - {"__init__.py", "state.py", "worker.py"}
    assert not loose, f"modules outside a room: {loose}"
    assert {p.name for p in gui.iterdir() if (p / "__init__.py").is_file()} == GUI_ROOMS
    tests = Path(__file__).resolve().parent / "gui"
    test_rooms = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert test_rooms <= GUI_ROOMS, test_rooms - GUI_ROOMS


MAX_MODULE_LINES = 400


def test_no_module_over_400_lines():
    long = {str(p.relative_to(CORE.parent)): n for p in CORE.parent.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these (a module does one job): {long}"


def test_import_linter_contracts_hold():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(["lint-imports"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_network_is_blocked_in_tests():
    with pytest.raises(RuntimeError, match="network"):
        socket.create_connection(("127.0.0.1", 9))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(RuntimeError, match="network"):
        sock.connect(("192.0.2.1", 80))
