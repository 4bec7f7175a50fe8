"""Label assist in the window: the unlabelled grid's keyboard flow (Enter, number keys, undo within a batch,
batches written atomically to a labels CSV with relative paths, recorded in the project), the near-duplicate
pairs side by side with the one action that groups them, and Retrain from a real exported run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from safetensors.torch import load_file

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data.confirmed import read_confirmed, with_confirmed
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.deploy.label_assist import Suggestion
from desktop_tl.core.project import load_project, own_labels_file
from desktop_tl.gui.dataset.dataset_panel import IMPORT_JOB, DatasetImportPanel
from desktop_tl.gui.labelling.label_assist import ASSIST_JOB, RETRAIN_JOB
from desktop_tl.gui.labelling.unlabelled_dialog import UnlabelledDialog
from desktop_tl.gui.shell.label_assist_mount import mount_label_assist

from helpers import DEMO_IMAGES, copy_demo_subset


def _unlabelled(folder: Path, count: int, start: int = 20) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in ("grass", "gravel"):
        for image in sorted((DEMO_IMAGES / name).glob("*.jpg"))[start:start + count // 2]:
            copied.append(Path(shutil.copy(image, folder / image.name)))
    return copied


@pytest.fixture
def assist(qtbot, tmp_path):
    project = tmp_path / "project"
    files = _unlabelled(tmp_path / "new scans", 8)
    csv_path = own_labels_file(project / "study.dtlproj")
    project.mkdir()
    heat = Image.new("RGB", (32, 32), (200, 40, 40))
    suggestions = [Suggestion(f"../new scans/{f.name}", "grass" if i % 2 else "gravel", 0.55 + i / 100, i / 50,
                              heat if i == 0 else None) for i, f in enumerate(files)]
    dialog = UnlabelledDialog(suggestions, ["grass", "gravel"], csv_path, batch=3)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog, csv_path, suggestions


def test_keyboard_flow_batches_and_undo_write_an_atomic_relative_labels_csv(qtbot, assist):
    dialog, csv_path, suggestions = assist
    grid = dialog.grid
    assert dialog.heatmap_box.isChecked() and dialog.model.items[0].picture is not None   # the heat map is shown
    qtbot.keyClick(grid, Qt.Key.Key_Return)                          # first: accept the suggestion (gravel)
    qtbot.keyClick(grid, Qt.Key.Key_1)                               # second: class 1 (grass)
    qtbot.keyClick(grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)   # no: undo
    assert dialog.current() == suggestions[1] and suggestions[1].path not in dialog.decisions
    qtbot.keyClick(grid, Qt.Key.Key_2)                               # second: gravel after all
    qtbot.keyClick(grid, Qt.Key.Key_Down)                            # arrows move (the third stays unlabelled)
    assert dialog.decisions == {suggestions[0].path: "gravel", suggestions[1].path: "gravel"}
    assert "✔ gravel" in dialog.model.data(dialog.model.index(0))
    assert not csv_path.exists()                                     # nothing written before the batch ends

    qtbot.mouseClick(dialog.next_button, Qt.MouseButton.LeftButton)  # saves the batch, shows the next three
    assert read_confirmed(csv_path) == {suggestions[0].path: "gravel", suggestions[1].path: "gravel"}
    assert dialog.start == 3 and dialog.current() == suggestions[3]
    dialog.undo()                                                    # undo does not reach the saved batch
    assert len(read_confirmed(csv_path)) == 2 and dialog.decisions == {}
    qtbot.mouseClick(dialog.class_buttons[0], Qt.MouseButton.LeftButton)   # the mouse works too
    where = grid.visualRect(dialog.model.index(1)).center()
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=where)
    qtbot.mouseDClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=where)   # double-click accepts
    dialog.close()                                                   # closing saves the batch
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert {r["path"]: r["label"] for r in rows} == {suggestions[0].path: "gravel", suggestions[1].path: "gravel",
                                                      suggestions[3].path: "grass",
                                                      suggestions[4].path: suggestions[4].suggested}
    assert all(r["path"].startswith("../new scans/") for r in rows)  # relative to the CSV, never absolute
    assert [p.name for p in csv_path.parent.iterdir()] == [csv_path.name]   # no temporary file left behind
    assert sorted(p.name for p in (csv_path.parent.parent / "new scans").iterdir()) == \
        sorted(Path(s.path).name for s in suggestions)               # the user's files were not moved


def test_confirmed_images_join_training_only_and_the_project_records_the_csv(qtbot, assist, main_window, tmp_path):
    dialog, csv_path, suggestions = assist
    for _ in range(3):
        qtbot.keyClick(dialog.grid, Qt.Key.Key_Return)
    dialog.sig_saved.connect(main_window.label_assist._on_labels_saved)
    assert dialog.save()
    data = copy_demo_subset(tmp_path / "data", 6, ("grass", "gravel"))
    base = import_dataset(data, SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0))
    joined = with_confirmed(base, csv_path)
    added = [s for s in joined.samples if s not in base.samples]
    assert joined.confirmed == 3 and len(added) == 3 and {s.split for s in added} == {"train"}
    assert [s.split for s in joined.samples[:len(base.samples)]] == [s.split for s in base.samples]
    assert all(s.path.startswith("../new scans/") for s in added)
    assert with_confirmed(joined, csv_path).samples == joined.samples          # joining again adds nothing

    assert main_window.state.labels_csv == csv_path
    project_file = csv_path.parent / "study.dtlproj"
    assert main_window.save_project(project_file)
    assert json.loads(project_file.read_text())["labels_csv"] == csv_path.name    # relative to the project
    assert load_project(project_file).labels_csv == csv_path
    old = json.loads(project_file.read_text())
    del old["labels_csv"]                                            # a project saved before label assist
    project_file.write_text(json.dumps(old))
    assert load_project(project_file).labels_csv is None


def test_near_duplicate_pairs_side_by_side_and_kept_in_one_split(qtbot, app_state, controller, tmp_path):
    data = copy_demo_subset(tmp_path / "data", 10, ("grass", "gravel"))
    for image in sorted((data / "gravel").glob("*.jpg"))[:6]:       # resized copies: near twins
        with Image.open(image) as original:
            original.resize((original.width * 3 // 4, original.height * 3 // 4)).save(image.with_name(
                f"copy_{image.stem}.png"))
    panel = DatasetImportPanel(app_state, controller)
    qtbot.addWidget(panel)
    app_state.set_split(SplitConfig(val_fraction=0.3, test_fraction=0.3, seed=1))
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000):
        panel.import_path(data)
    view = panel.near_view
    pairs = view.model.rows
    assert len(pairs) >= 6 and pairs[0].cross_split and view.keep_button.isEnabled()
    view.table.selectRow(0)
    qtbot.waitUntil(lambda: all(not label.pixmap().isNull() for label in view.images), timeout=10_000)
    a, b = pairs[0].paths
    assert Path(a).name in view.captions[0].text() and Path(b).name in view.captions[1].text()
    assert view.captions[0].text().split("\n")[1] != view.captions[1].text().split("\n")[1]   # different splits
    assert f"{pairs[0].distance} bits apart: in different splits" == view.distance.text()

    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000) as done:
        qtbot.mouseClick(view.keep_button, Qt.MouseButton.LeftButton)
    assert done.args[0] == IMPORT_JOB and app_state.split.group_near_duplicates
    assert panel.split_settings.near.isChecked()
    assert not any(n.cross_split for n in app_state.dataset.near_duplicates) and not view.keep_button.isEnabled()
    panel.close()


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    from desktop_tl.core.deploy.export import export_onnx
    from desktop_tl.core.events import Finished
    from desktop_tl.core.runs.folder import create_run
    from desktop_tl.core.training.run import train_run

    root = tmp_path_factory.mktemp("retrain")
    data = copy_demo_subset(root / "data", 8, ("grass", "gravel"))
    run = root / "runs" / "first"
    config = TrainConfig(recipe="custom", epochs=1, image_size=64, freeze="head", augment="none", num_workers=0,
                         batch_size=8)
    split = SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0)
    create_run(run, data, config, split)
    assert isinstance(list(train_run(run))[-1], Finished)
    assert export_onnx(run).parity_ok
    return run, data, config, split


def test_unlabelled_refuses_without_an_exported_run(qtbot, app_state, controller):
    panel = DatasetImportPanel(app_state, controller)
    qtbot.addWidget(panel)
    assist = mount_label_assist(panel)
    assert not assist.label_unlabelled(Path("anywhere"))
    assert "finished run with an exported model" in panel.message.text() and panel.message.kind == "error"
    panel.message.clear_message()
    qtbot.mouseClick(panel.unlabelled_button, Qt.MouseButton.LeftButton)     # the button reaches label assist
    assert "finished run with an exported model" in panel.message.text()


def test_retrain_continues_from_the_best_checkpoint_on_the_enlarged_dataset(qtbot, main_window, exported_run,
                                                                           tmp_path):
    from desktop_tl.core.models.store import list_imported
    from desktop_tl.core.runs.checkpoint import BEST, load_checkpoint
    from desktop_tl.core.runs.folder import load_index, open_run

    run, data, config, split = exported_run
    window, panel = main_window, main_window.dataset_panel
    window.state.set_split(split)
    window.state.set_config(config)
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000):
        panel.import_path(data)
    window.state.set_run(run)
    unlabelled = _unlabelled(tmp_path / "unlabelled", 4)
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=120_000) as scored:
        assert window.label_assist.label_unlabelled(unlabelled[0].parent)
    assert scored.args[0] == ASSIST_JOB
    dialog = window.label_assist.dialog
    assert len(dialog.suggestions) == 4 and dialog.heatmap_box.isChecked()     # heat maps from the exported model
    margins = [s.margin for s in dialog.suggestions]
    assert margins == sorted(margins)
    for _ in range(2):
        qtbot.keyClick(dialog.grid, Qt.Key.Key_Return)
    started = []
    window.training_monitor.sig_training_started.connect(started.append)
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000) as prepared:
        qtbot.mouseClick(dialog.retrain_button, Qt.MouseButton.LeftButton)
    assert prepared.args[0] == RETRAIN_JOB and not dialog.isVisible()
    labels_csv = window.state.labels_csv
    assert labels_csv == run.with_name(f"{run.name}.confirmed.csv") and len(read_confirmed(labels_csv)) == 2
    assert window.state.dataset.confirmed == 2
    weights = window.state.config.weights
    assert weights.startswith("imported:") and "best checkpoint" in panel.message.text()
    stored = next(s for s in list_imported(config.model) if f"imported:{s.id}" == weights)
    best = load_checkpoint(run / BEST).model
    assert all((load_file(stored.path)[k] == v).all() for k, v in best.items())   # the current model's weights

    qtbot.waitUntil(lambda: bool(started), timeout=10_000)
    new_run = started[0]
    assert new_run != run                                            # a new run, in a fresh folder
    qtbot.waitUntil(lambda: window.training_monitor.active_run is None, timeout=180_000)
    assert open_run(new_run).finished and open_run(new_run).config.weights == weights
    index = load_index(new_run)
    old = load_index(run)
    assert len(index.samples) == len(old.samples) + 2
    assert [s for s in index.samples if s.split != "train"] == [s for s in old.samples if s.split != "train"]
    written = (new_run / "dataset.json").read_text() + (new_run / "run.json").read_text()
    assert str(tmp_path) not in written and str(run.parent.parent) not in written     # relative paths only


def test_the_tenth_class_has_a_key_decisions_show_on_their_tiles_and_the_keyboard_stays_on_the_grid(
        qtbot, tmp_path):
    from desktop_tl.gui.widgets.decisions import DECIDED_TONE
    from desktop_tl.gui.widgets.thumbnails import load_thumbnail

    files = _unlabelled(tmp_path / "new scans", 4)
    classes = [f"class {i}" for i in range(10)]
    suggestions = [Suggestion(f"new scans/{f.name}", "class 0", 0.5, 0.1, None) for f in files]
    dialog = UnlabelledDialog(suggestions, classes, tmp_path / "labels.confirmed.csv", batch=4)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.activateWindow()
    dialog.grid.setFocus()
    qtbot.keyClick(dialog.grid, Qt.Key.Key_0)                        # the tenth class
    assert dialog.decisions == {suggestions[0].path: "class 9"} and dialog.class_buttons[9].text() == "0: class 9"
    tile = dialog.model.index(0)
    assert dialog.model.data(tile).startswith("✔ class 9")           # first, where the tile's caption shows it
    assert dialog.model.data(tile, Qt.ItemDataRole.BackgroundRole).name() == DECIDED_TONE
    qtbot.mouseClick(dialog.class_buttons[3], Qt.MouseButton.LeftButton)
    assert dialog.focusWidget() is dialog.grid                       # the next key goes to the grid again
    qtbot.keyClick(dialog.grid, Qt.Key.Key_2)
    assert dialog.decisions[suggestions[2].path] == "class 1"

    tiny = tmp_path / "digit.png"                                    # a 28 px image is enlarged to be seen
    Image.new("L", (28, 28), 128).save(tiny)
    assert load_thumbnail(tiny, 96).width() == 84
