"""Dataset import panel: real imports on the worker, cancel, errors, lazy thumbnails, augmentation preview."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from desktop_tl.core.config import SplitConfig
from desktop_tl.gui.dataset import augmentation_preview
from desktop_tl.gui.dataset import dataset_panel as panel_module
from desktop_tl.gui.dataset.dataset_panel import IMPORT_JOB, PREVIEW_JOB, DatasetImportPanel
from desktop_tl.gui.widgets import thumbnails as thumbnails_module
from desktop_tl.gui.widgets.item_models import BAR_ROLE, SORT_ROLE, ImageItem, ImageListModel
from desktop_tl.gui.widgets.thumbnails import ThumbnailCache

PER_CLASS = 8


def _crops(image: np.ndarray, count: int, seed: int, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    out = []
    for _ in range(count):
        top, left = int(rng.integers(0, height - 3 * size)), int(rng.integers(0, width - 3 * size))
        crop = Image.fromarray(image[top:top + 3 * size, left:left + 3 * size]).convert("RGB")
        out.append(crop.resize((size, size), Image.Resampling.BILINEAR))
    return out


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """3 classes x 8 small real crops (PNG and JPEG), a truncated JPEG and a text file named .png."""
    from skimage import data

    root = tmp_path_factory.mktemp("panel_data") / "photos"
    for name, image, seed in (("cat", data.chelsea(), 1), ("coffee", data.coffee(), 2),
                              ("astronaut", data.astronaut(), 3)):
        (root / name).mkdir(parents=True)
        for i, crop in enumerate(_crops(image, PER_CLASS, seed)):
            crop.save(root / name / f"{name}_{i}.{'png' if i % 2 else 'jpg'}")
    good = (root / "cat" / "cat_0.jpg").read_bytes()
    (root / "cat" / "broken.jpg").write_bytes(good[: len(good) // 3])
    (root / "coffee" / "notes.png").write_text("these are my notes, not a picture\n", encoding="utf-8")
    return root


@pytest.fixture
def panel(qtbot, app_state, controller):
    """A shown panel; closed (thumbnail pool drained) after the test."""
    widget = DatasetImportPanel(app_state, controller)
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    yield widget
    widget.close()


def _wait_import(qtbot, panel: DatasetImportPanel, start) -> None:
    """Run `start()` and wait until the import job ends; fail with the panel's message if it failed."""
    with qtbot.waitSignal(panel.jobs.sig_running, timeout=30_000, check_params_cb=lambda running: not running):
        start()
    assert panel.message.kind != "error", panel.message.text()
    assert panel.state.dataset is not None


def _import(qtbot, panel: DatasetImportPanel, path: Path) -> None:
    _wait_import(qtbot, panel, lambda: panel.import_path(path))


def _cell(model, row: int, column: int, role=Qt.ItemDataRole.DisplayRole):
    return model.data(model.index(row, column), role)


def test_import_shows_class_counts_and_skipped_files(qtbot, panel, app_state, dataset_dir):
    _import(qtbot, panel, dataset_dir)

    index = app_state.dataset
    assert index is not None and index.classes == ["astronaut", "cat", "coffee"]
    model = panel.class_model
    assert model.rowCount() == 3
    counts = index.counts()
    for row, name in enumerate(index.classes):
        assert _cell(model, row, 0) == name
        shown = [_cell(model, row, c, SORT_ROLE) for c in (1, 2, 3)]
        assert shown == [counts[name][s] for s in ("train", "val", "test")]
        assert _cell(model, row, 4, SORT_ROLE) == PER_CLASS
        assert _cell(model, row, 5, BAR_ROLE) == pytest.approx(1.0)
    skipped = {_cell(panel.skipped_model, r, 0): _cell(panel.skipped_model, r, 1)
               for r in range(panel.skipped_model.rowCount())}
    assert set(skipped) == {"cat/broken.jpg", "coffee/notes.png"}
    assert any(word in skipped["cat/broken.jpg"].lower() for word in ("corrupt", "truncated"))
    assert "text" in skipped["coffee/notes.png"]
    assert "24 usable images" in panel.summary.text() and "2 skipped" in panel.summary.text()
    assert panel.findings.text()
    assert not panel.progress.isVisible()
    assert not panel.message.isVisible()


def test_pick_buttons_use_dialogs_for_folder_and_csv(qtbot, panel, app_state, dataset_dir, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(dataset_dir))
    _wait_import(qtbot, panel, lambda: qtbot.mouseClick(panel.dicom_button, Qt.MouseButton.LeftButton))
    assert app_state.dataset.source_kind == "folder"

    table = dataset_dir / "labels.csv"
    rows = ["path,label"] + [f"{p.relative_to(dataset_dir).as_posix()},{p.parent.name}"
                             for p in sorted(dataset_dir.glob("c*/*_[0-5].*"))]
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    try:
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(table), ""))
        _wait_import(qtbot, panel, lambda: qtbot.mouseClick(panel.csv_button, Qt.MouseButton.LeftButton))
    finally:
        table.unlink()
    assert app_state.dataset.source_kind == "csv"
    assert app_state.dataset.classes == ["cat", "coffee"]
    assert panel.class_model.rowCount() == 2

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")
    qtbot.mouseClick(panel.folder_button, Qt.MouseButton.LeftButton)   # dialog cancelled: nothing starts
    assert not panel.jobs.running


def test_resplit_applies_new_fractions(qtbot, panel, app_state, dataset_dir):
    _import(qtbot, panel, dataset_dir)
    assert panel.split_settings.apply_button.isEnabled()
    panel.split_settings.val.setValue(0.25)
    panel.split_settings.test.setValue(0.25)
    _wait_import(qtbot, panel, lambda: qtbot.mouseClick(panel.split_settings.apply_button, Qt.MouseButton.LeftButton))
    assert {c["val"] for c in app_state.dataset.counts().values()} == {2}
    assert app_state.split.val_fraction == 0.25

    # A project (or anyone) may set the split in the shared state; the next import uses it.
    app_state.set_split(SplitConfig(val_fraction=0.125, test_fraction=0.125, seed=3, group_by_patient=False))
    _import(qtbot, panel, dataset_dir)
    assert panel.split_settings.config() == app_state.split
    assert {c["val"] for c in app_state.dataset.counts().values()} == {1}

    panel.split_settings.val.setValue(0.5)
    panel.split_settings.test.setValue(0.45)
    assert not panel.resplit(panel.split_settings.config())
    assert panel.message.kind == "error" and "less than 10%" in panel.message.text()


def test_cancel_stops_import_and_panel_keeps_working(qtbot, panel, app_state, dataset_dir, monkeypatch):
    real_import = panel_module.import_dataset

    def slow_import(source, split, progress, should_stop):
        def slow_progress(done, total):
            time.sleep(0.05)
            progress(done, total)
        return real_import(source, split, slow_progress, should_stop)

    monkeypatch.setattr(panel_module, "import_dataset", slow_import)
    with qtbot.waitSignal(panel.jobs.sig_progress, timeout=10_000):
        assert panel.import_path(dataset_dir)
    assert panel.progress.isVisible() and panel.progress.cancel_button.isVisible()
    assert not panel.folder_button.isEnabled()
    with qtbot.waitSignal(panel.jobs.sig_failed, timeout=10_000) as failed:
        qtbot.mouseClick(panel.progress.cancel_button, Qt.MouseButton.LeftButton)
    assert failed.args[0] == IMPORT_JOB
    assert app_state.dataset is None
    assert "cancelled" in panel.message.text().lower()
    assert panel.folder_button.isEnabled() and not panel.progress.isVisible()

    monkeypatch.setattr(panel_module, "import_dataset", real_import)
    _import(qtbot, panel, dataset_dir)
    assert panel.class_model.rowCount() == 3


def test_failing_import_shows_error_and_panel_still_works(qtbot, panel, app_state, dataset_dir, tmp_path):
    lonely = tmp_path / "one_class" / "cat"
    lonely.mkdir(parents=True)
    for image in sorted((dataset_dir / "cat").glob("cat_*"))[:4]:
        (lonely / image.name).write_bytes(image.read_bytes())
    with qtbot.waitSignal(panel.jobs.sig_failed, timeout=30_000) as failed:
        assert panel.import_path(lonely.parent)
    assert failed.args[0] == IMPORT_JOB
    assert panel.message.kind == "error"
    assert "Only one class" in panel.message.text() and "What to do" in panel.message.text()
    assert app_state.dataset is None

    _import(qtbot, panel, dataset_dir)
    assert panel.class_model.rowCount() == 3
    assert not panel.message.isVisible()


def test_busy_worker_is_reported_not_queued(qtbot, panel, controller, dataset_dir):
    release = __import__("threading").Event()
    assert controller.submit("train", lambda ctx: release.wait(10))
    try:
        assert not panel.import_path(dataset_dir)
        assert "Another task is running" in panel.message.text()
    finally:
        with qtbot.waitSignal(controller.sig_result, timeout=10_000):
            release.set()


def test_thumbnail_model_decodes_only_when_asked(qtbot, dataset_dir, monkeypatch):
    decoded: list[Path] = []
    real = thumbnails_module.load_thumbnail

    def counting(path, size):
        decoded.append(Path(path))
        return real(path, size)

    monkeypatch.setattr(thumbnails_module, "load_thumbnail", counting)
    cache = ThumbnailCache(size=32)
    model = ImageListModel(cache)
    files = sorted((dataset_dir / "cat").glob("cat_*")) + [dataset_dir / "cat" / "broken.jpg"]
    model.set_items([ImageItem(p, p.name) for p in files])
    assert decoded == []

    first = model.index(0)
    placeholder = model.data(first, Qt.ItemDataRole.DecorationRole)
    assert placeholder.cacheKey() == cache.placeholder.cacheKey()
    with qtbot.waitSignal(model.dataChanged, timeout=10_000):
        pass
    assert decoded == [files[0]]
    pixmap = model.data(first, Qt.ItemDataRole.DecorationRole)
    assert pixmap.cacheKey() != cache.placeholder.cacheKey() and max(pixmap.width(), pixmap.height()) == 32

    broken = model.index(len(files) - 1)
    with qtbot.waitSignal(cache.sig_ready, timeout=10_000):
        model.data(broken, Qt.ItemDataRole.DecorationRole)
    assert model.data(broken, Qt.ItemDataRole.DecorationRole).cacheKey() == cache.broken_pixmap.cacheKey()
    assert len(decoded) == 2
    cache.shutdown()


def test_grid_loads_thumbnails_of_the_shown_class_only(qtbot, panel, app_state, dataset_dir, monkeypatch):
    decoded: list[Path] = []
    real = thumbnails_module.load_thumbnail
    monkeypatch.setattr(thumbnails_module, "load_thumbnail", lambda p, s: decoded.append(Path(p)) or real(p, s))
    _import(qtbot, panel, dataset_dir)
    assert decoded == []                      # classes tab shown: nothing decoded
    panel.tabs.setCurrentIndex(2)
    qtbot.waitUntil(lambda: len(decoded) >= 1, timeout=10_000)
    panel.thumbnails.wait()
    assert {p.parent.name for p in decoded} == {"astronaut"}
    panel.grid.select_class("coffee")
    assert panel.grid.model.rowCount() == PER_CLASS
    qtbot.waitUntil(lambda: any(p.parent.name == "coffee" for p in decoded), timeout=10_000)


def test_augmentation_preview_shows_views(qtbot, panel, app_state, dataset_dir):
    app_state.update_config(model="efficientnet_lite0", recipe="custom", image_size=64)
    _import(qtbot, panel, dataset_dir)
    panel.tabs.setCurrentIndex(2)
    first = panel.grid.model.index(0)
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000) as result:
        panel.grid.view.clicked.emit(first)
    assert result.args[0] == PREVIEW_JOB
    assert panel.preview.views.count() == augmentation_preview.PREVIEW_COUNT
    assert "64×64" in panel.preview.caption.text()
    views = result.args[1].views
    assert all(v.size == (64, 64) for v in views)

    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000) as strong:
        panel.preview.preset.setCurrentText("strong")
    assert strong.args[1].preset == "strong"
    assert panel.preview.views.count() == augmentation_preview.PREVIEW_COUNT
    app_state.set_recipe("auto", 600.0)            # Balanced: the Custom size left over does not apply
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000) as planned:
        panel.grid.view.clicked.emit(first)
    assert all(v.size == (224, 224) for v in planned.args[1].views)


def test_the_skipped_files_table_shows_several_rows(qtbot, app_state, controller):
    from desktop_tl.gui.dataset.dataset_panel import DatasetImportPanel

    panel = DatasetImportPanel(app_state, controller)
    qtbot.addWidget(panel)
    rows = panel.skipped_table.minimumHeight() // panel.skipped_table.verticalHeader().defaultSectionSize()
    assert rows >= 6


def _type(qtbot, box, text: str) -> None:
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def test_typed_split_fractions_are_taken_as_typed_and_an_out_of_range_one_says_so(qtbot, panel, app_state):
    settings = panel.split_settings
    panel.show()
    _type(qtbot, settings.val, "0.15")
    _type(qtbot, settings.test, "0.25")
    assert (app_state.split.val_fraction, app_state.split.test_fraction) == (0.15, 0.25)
    _type(qtbot, settings.test, "0.9")                                 # above the 0.8 the field takes
    assert app_state.split.test_fraction == 0.25 and settings.test.value() == 0.25
    assert settings.test.complaint == "0.9 is out of range: Test takes 0.000 to 0.800. It stays 0.250."
    _type(qtbot, settings.seed, "42")
    assert app_state.split.seed == 42 and settings.test.complaint      # shown until the user types there again
    _type(qtbot, settings.test, "0.2")
    assert app_state.split.test_fraction == 0.2 and settings.test.complaint == ""


def test_a_multi_label_table_shows_its_labels_and_what_occurs_together(qtbot, panel, app_state, tmp_path):
    from helpers import DEMO_IMAGES

    rows = []
    for i, (first, second) in enumerate([("brick", "grass"), ("grass", ""), ("brick", ""), ("grass", "")] * 3):
        image = sorted((DEMO_IMAGES / first).glob("*.jpg"))[i]
        (tmp_path / image.name).write_bytes(image.read_bytes())
        rows.append(f"{image.name},{first}{';' + second if second else ''}")
    table = tmp_path / "findings.csv"
    table.write_text("path,labels\n" + "\n".join(rows) + "\n", encoding="utf-8")
    _import(qtbot, panel, table)
    assert app_state.dataset.multi_label
    assert [_cell(panel.class_model, r, 0) for r in range(panel.class_model.rowCount())] == ["brick", "grass"]
    assert _cell(panel.class_model, 1, 4, SORT_ROLE) == 9          # 'grass' is on 9 of the 12 images
    assert "2 labels (several per image)" in panel.summary.text()
    assert "Several labels per image" in panel.findings.text() and "brick + grass: 3" in panel.findings.text()
