"""Main window: docks, menus, settings, projects (happy and damaged), drag and drop, closing while training."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QDockWidget, QMessageBox, QWidget

from desktop_tl.core.data.confirmed import read_confirmed
from desktop_tl.core.events import BatchProgress, CheckpointSaved
from desktop_tl.core.project import PROJECT_FORMAT, load_project
from desktop_tl.gui.shell.dock_layout import default_window_size
from desktop_tl.gui.shell.main_window import MainWindow, app_settings

from helpers import copy_demo_subset

PANELS = ("modelBrowser", "datasetImport", "freezeTree", "trainingMonitor", "evaluationPanel", "exportPanel")


@pytest.fixture
def warnings_shown(monkeypatch):
    """Collect QMessageBox.warning texts instead of opening modal boxes."""
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda parent, title, text, *a: shown.append(text)))
    return shown


def _import(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.state.sig_dataset_changed, timeout=60_000,
                          check_params_cb=lambda index: index is not None):
        window.import_dataset(path)


def _menu_texts(window: MainWindow, title: str) -> list[str]:
    menu = next(a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == title)
    return [a.text().replace("&", "") for a in menu.actions()]


def test_constructible_without_arguments_with_dockable_panels(qtbot):
    window = MainWindow()
    window.ask_stop_running_job = lambda: True
    qtbot.addWidget(window)
    for name in PANELS:
        panel = window.findChild(QWidget, name)
        assert panel is not None, name
        dock = panel.parent()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parent()
        assert isinstance(dock, QDockWidget), f"{name} is not in a dock"
        assert dock.features() & QDockWidget.DockWidgetFeature.DockWidgetMovable
        assert dock.features() & QDockWidget.DockWidgetFeature.DockWidgetFloatable
    window.close()
    assert not window.controller.thread.isRunning()


def test_menus(main_window, monkeypatch):
    file_items = _menu_texts(main_window, "File")
    for item in ("New project", "Open project…", "Open recent", "Save project", "Save project as…", "Export report…",
                 "Quit"):
        assert item in file_items
    assert _menu_texts(main_window, "Help") == ["Getting started", "About desktop_tl"]
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box.text()))
    main_window.show_getting_started()
    assert "Operating point" in shown[0] and "Nothing is ever sent over the network" in shown[0]
    view_items = _menu_texts(main_window, "View")
    assert "Reset layout" in view_items and "Training" in view_items
    about = []
    monkeypatch.setattr(QMessageBox, "about", staticmethod(lambda parent, title, text: about.append(text)))
    main_window.show_about()
    assert "desktop_tl" in about[0] and "downloaded" in about[0]


def test_layout_geometry_and_recent_projects_persist(qtbot, tmp_path):
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    first.docks["exportPanel"].hide()
    first.tabifyDockWidget(first.docks["datasetImport"], first.docks["modelBrowser"])
    first.resize(800, 700)                 # within the offscreen screen (800x800), so restoring keeps it
    assert first.save_project(tmp_path / "one.dtlproj")
    first.close()
    assert not first.controller.thread.isRunning()
    assert app_settings().value("window/state") is not None

    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    default = default_window_size(second.screen().availableGeometry().size())
    assert (second.width(), second.height()) == (first.width(), first.height()) != (default.width(), default.height())
    assert second.docks["exportPanel"].isHidden()
    assert second.docks["modelBrowser"] in second.tabifiedDockWidgets(second.docks["datasetImport"])
    assert second.recent_projects()[0] == (tmp_path / "one.dtlproj").resolve()
    second._fill_recent_menu()
    assert second.recent_menu.actions()[0].text() == "one.dtlproj"
    second.reset_layout()
    assert not second.docks["exportPanel"].isHidden()
    assert second.docks["modelBrowser"] not in second.tabifiedDockWidgets(second.docks["datasetImport"])
    second.close()


def test_project_round_trip_with_relative_paths(qtbot, main_window, tiny_images, tmp_path):
    window = main_window
    window.state.set_split(replace(window.state.split, seed=7, val_fraction=0.25))
    _import(qtbot, window, tiny_images)
    window.model_browser.select_model("resnet18", "none")
    window.freeze_tree.last_spin.setValue(2)
    window.freeze_tree.last_button.click()
    window.training_monitor.epochs.setValue(3)
    window.training_monitor.lr.setValue(0.0005)
    run_dir = tmp_path / "project" / "runs" / "run-a"
    run_dir.mkdir(parents=True)
    window.state.set_run(run_dir)
    project_file = tmp_path / "project" / "study"
    assert window.save_project(project_file)                       # the suffix is added
    saved = tmp_path / "project" / "study.dtlproj"
    data = json.loads(saved.read_text())
    assert data["format"] == PROJECT_FORMAT
    assert data["model"] == {"name": "resnet18", "weights": "none"} and data["freeze"] == "last:2"
    assert data["split"]["seed"] == 7 and data["split"]["val_fraction"] == 0.25
    assert data["hyperparameters"]["epochs"] == 3 and data["hyperparameters"]["lr"] == 0.0005
    assert not os.path.isabs(data["dataset"]["source"]) and data["runs"] == ["runs/run-a"]
    assert Path(os.path.normpath(saved.parent / data["dataset"]["source"])) == tiny_images.resolve()
    assert window.windowTitle().startswith("study")

    window.new_project()
    assert window.state.dataset is None and window.state.config.model == "efficientnet_lite0"
    assert window.state.run_dir is None and window.training_monitor.epochs.value() == 8

    with qtbot.waitSignal(window.state.sig_dataset_changed, timeout=60_000,
                          check_params_cb=lambda index: index is not None):
        assert window.open_project(saved)
    state = window.state
    assert (state.config.model, state.config.weights, state.config.freeze) == ("resnet18", "none", "last:2")
    assert state.split.seed == 7 and state.dataset.source == tiny_images.resolve()
    assert state.run_dir == run_dir.resolve() and state.runs == [str(run_dir.resolve())]
    assert window.training_monitor.epochs.value() == 3
    assert window.model_browser.current_entry().name == "resnet18"
    assert window.freeze_tree.tree_model.head == "fc"
    assert window.training_monitor.runs_base() == saved.parent / "study.runs"     # its own, not the folder's


@pytest.mark.parametrize("content, expected", [
    ('{"format": "desktop_tl.project/1", "model": {"name": "resn', "not valid JSON"),
    ('{"format": "desktop_tl.project/1", "hyperparameters": {"epochs": "ten"}}', "'epochs'"),
    ('{"format": "desktop_tl.project/1", "runs": "runs/a"}', "'runs' must be a list"),
    ('{"format": "desktop_tl.project/1", "dataset": {"source": 5}}', "dataset source"),
    ('{"format": "desktop_tl.project/1", "hyperparameters": {"epochs": 0}}', "epochs"),
    ('[1, 2, 3]', "not a desktop_tl project"),
    ("", "not valid JSON"),
])
def test_damaged_project_is_refused_with_a_message(main_window, warnings_shown, tmp_path, content, expected):
    path = tmp_path / "bad.dtlproj"
    path.write_text(content)
    before = (main_window.state.config.model, main_window.state.config.freeze)
    assert not main_window.open_project(path)
    assert len(warnings_shown) == 1 and expected in warnings_shown[0], warnings_shown
    assert "What to do" in warnings_shown[0]
    assert (main_window.state.config.model, main_window.state.config.freeze) == before
    assert main_window.project_file is None


def test_missing_project_and_missing_dataset_are_reported(main_window, warnings_shown, tmp_path):
    assert not main_window.open_project(tmp_path / "nowhere.dtlproj")
    assert "does not exist" in warnings_shown[-1]
    path = tmp_path / "p.dtlproj"
    path.write_text(json.dumps({"format": PROJECT_FORMAT, "dataset": {"source": "gone/images"},
                                "model": {"name": "resnet18", "weights": "none"}}))
    assert main_window.open_project(path)
    assert "could not be found" in warnings_shown[-1] and "gone" in warnings_shown[-1]
    assert main_window.state.config.model == "resnet18"


def _drag_events(path: Path) -> tuple[QMimeData, QDragEnterEvent, QDropEvent]:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    return mime, enter, drop


def test_dropping_a_folder_imports_it(qtbot, main_window, tiny_images, tmp_path):
    _mime, enter, drop = _drag_events(tiny_images)
    main_window.dragEnterEvent(enter)
    assert enter.isAccepted()
    with qtbot.waitSignal(main_window.state.sig_dataset_changed, timeout=60_000,
                          check_params_cb=lambda index: index is not None):
        main_window.dropEvent(drop)
    assert main_window.state.dataset.classes == ["cat", "coffee"]

    (tmp_path / "notes.doc").write_text("not a dataset")
    _mime2, refused, _ = _drag_events(tmp_path / "notes.doc")
    main_window.dragEnterEvent(refused)
    assert not refused.isAccepted()


def _window_ready_to_train(qtbot, tiny_index, fast_config, run_dir: Path) -> MainWindow:
    """A shown window with a tiny dataset, a slow-enough training setting (batch 1, 5 epochs) and a run folder."""
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.state.set_dataset(tiny_index)
    fast_config(window.state, batch_size=1, epochs=5)
    window.training_monitor.set_run_dir(run_dir)
    return window


def test_closing_during_training_asks_then_stops_the_worker(qtbot, tiny_index, fast_config, tmp_path):
    window = _window_ready_to_train(qtbot, tiny_index, fast_config, tmp_path / "run")
    batches = []
    window.controller.sig_event.connect(lambda e: batches.append(e) if isinstance(e, BatchProgress) else None)
    asked = []
    window.ask_stop_running_job = lambda: asked.append(True) or False
    assert window.training_monitor.start()
    qtbot.waitUntil(lambda: len(batches) >= 1, timeout=120_000)

    window.close()                                                 # the user answers "No"
    assert asked and window.isVisible() and window.controller.thread.isRunning()

    window.ask_stop_running_job = lambda: True                     # now "Yes"
    window.ask_save_changes = lambda before="quitting": "discard"
    window.close()
    assert not window.isVisible()
    assert not window.controller.thread.isRunning()
    assert len(batches) < 40, "training was not stopped"
    assert (tmp_path / "run" / "run.json").is_file()


def test_a_failing_engine_call_shows_an_error_and_the_window_keeps_working(qtbot, main_window, tiny_index,
                                                                           fast_config, tmp_path, monkeypatch):
    import desktop_tl.core.training.run as train

    def broken(*args, **kwargs):
        raise RuntimeError("the GPU caught fire (simulated)")
        yield  # pragma: no cover

    monkeypatch.setattr(train, "train_run", broken)
    main_window.show()
    main_window.state.set_dataset(tiny_index)
    fast_config(main_window.state)
    main_window.training_monitor.set_run_dir(tmp_path / "run")
    with qtbot.waitSignal(main_window.training_monitor.sig_training_failed, timeout=60_000):
        main_window.training_monitor.start_button.click()
    banner = main_window.training_monitor.banner
    assert banner.isVisible() and "simulated" in banner.text() and "What to do" in banner.text()
    assert not main_window.controller.busy
    main_window.model_browser.select_model("resnet18", "none")     # the rest of the window still works
    assert main_window.freeze_tree.tree_model.head == "fc"
    assert main_window.save_project(tmp_path / "after.dtlproj")
    assert load_project(tmp_path / "after.dtlproj").config.model == "resnet18"


def test_no_display_gives_a_clear_message(monkeypatch, capsys):
    from desktop_tl import cli
    from desktop_tl.gui.shell import app

    for variable in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(app.sys, "platform", "linux")
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "desktop-tl demo" in err
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert app.display_problem() is None


def test_show_run_fills_dataset_and_evaluation(main_window, trained_run):
    main_window.show_run(trained_run)
    assert main_window.state.run_dir == trained_run
    assert main_window.state.dataset is not None and main_window.state.dataset.classes == main_window.state.metrics["classes"]
    assert main_window.state.metrics["test"]["images"] > 0


@pytest.mark.parametrize("env, expected", [
    ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, False),
    ({"DISPLAY": ""}, False),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": ""}, True),
])
def test_demo_opens_the_window_only_where_a_person_can_see_it(monkeypatch, env, expected):
    import sys

    from desktop_tl.gui.shell.app import has_real_display

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert has_real_display() is expected


@pytest.mark.parametrize("size", [(1280, 720), (1024, 700)])
def test_the_window_fits_small_screens_without_overlapping_panels(main_window, qtbot, size):
    """A 1366x768 laptop leaves about 1280x720; at 1024x700 every panel still shows and scrolls to the rest."""
    from PySide6.QtWidgets import QScrollArea

    assert main_window.minimumSize().width() <= 1024 and main_window.minimumSize().height() <= 700
    main_window.resize(*size)
    main_window.show()
    qtbot.waitExposed(main_window)
    qtbot.wait(50)
    assert (main_window.width(), main_window.height()) == size
    shown = [d for d in main_window.docks.values() if d.isVisible() and not d.visibleRegion().isEmpty()]
    assert len(shown) == 4, [d.objectName() for d in shown]   # dataset, models, training, one tab of three
    rects = {d.objectName(): d.geometry() for d in shown}
    for a in rects:
        for b in rects:
            assert a == b or not rects[a].intersects(rects[b]), (a, b, rects[a], rects[b])
    for dock in shown:
        scroll = dock.widget()
        assert isinstance(scroll, QScrollArea)
        viewport, panel = scroll.viewport().size(), scroll.widget()
        assert viewport.width() >= 180 and viewport.height() >= 120, (dock.objectName(), viewport)
        # never squashed (once a panel that filled itself in meanwhile has been laid out again)
        qtbot.waitUntil(lambda: panel.width() >= panel.minimumSizeHint().width(), timeout=2000)
        if panel.width() > viewport.width():                      # what does not fit can be scrolled to
            qtbot.waitUntil(lambda: scroll.horizontalScrollBar().maximum()
                            == panel.width() - scroll.viewport().width(), timeout=2000)
    # what a new user needs first is in view without scrolling: the class table, the weights choice, the status
    for widget in (main_window.dataset_panel.class_table, main_window.model_browser.weights_combo,
                   main_window.statusBar()):
        assert not widget.visibleRegion().isEmpty(), widget
        assert widget.visibleRegion().boundingRect().height() >= min(widget.height(), 20), widget


def test_the_first_window_is_no_larger_than_the_screen():
    from PySide6.QtCore import QSize

    assert default_window_size(QSize(2560, 1400)) == QSize(1400, 900)
    assert default_window_size(QSize(1366, 728)) == QSize(1342, 664)     # the frame and title bar fit too
    assert default_window_size(QSize(640, 480)) == QSize(800, 560)    # the minimum; the window manager clips it


def test_quitting_during_training_offers_to_save_and_the_run_comes_back_resumable(
        qtbot, tiny_index, fast_config, tmp_path):
    window = _window_ready_to_train(qtbot, tiny_index, fast_config, tmp_path / "run")
    saved_epochs = []
    window.controller.sig_event.connect(lambda e: saved_epochs.append(e) if isinstance(e, CheckpointSaved) else None)
    window.ask_stop_running_job = lambda: True
    offers = []
    window.ask_save_changes = lambda before="quitting": offers.append(before) or "cancel"
    assert window.training_monitor.start()
    qtbot.waitUntil(lambda: len(saved_epochs) >= 1, timeout=120_000)
    window.close()                                  # "Stop it and quit?": Yes, then "Save the project?": Cancel
    assert offers == ["quitting"] and window.isVisible()
    assert not window.controller.busy               # stopped before the question, so nothing trained meanwhile
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"

    window.project_file = tmp_path / "study.dtlproj"                # "Save" writes this project file
    window.ask_save_changes = lambda before="quitting": "save"
    window.close()
    assert not window.isVisible() and not window.controller.thread.isRunning()
    project = load_project(tmp_path / "study.dtlproj")
    assert project.current_run == (tmp_path / "run").resolve() and project.runs == [project.current_run]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"

    again = MainWindow()
    again.ask_stop_running_job = lambda: True
    again.ask_save_changes = lambda before="quitting": "discard"
    qtbot.addWidget(again)
    assert again.open_project(tmp_path / "study.dtlproj")
    monitor = again.training_monitor
    assert monitor.chosen_run_dir() == project.current_run
    qtbot.waitUntil(lambda: monitor.start_button.text() == "Resume", timeout=5_000)
    qtbot.waitUntil(monitor.start_button.isEnabled, timeout=60_000)    # once the project's dataset is imported
    epochs = max(e.epoch for e in saved_epochs)                        # the last epoch saved before quitting
    assert monitor.point_counts()["val_loss"] == epochs                  # the saved epochs' curves are back
    assert f"interrupted; press Resume to continue it; {epochs} epochs saved" in monitor.log.toPlainText()
    again.close()


def test_importing_another_dataset_says_the_results_shown_are_of_another_run(qtbot, main_window, trained_run,
                                                                              tiny_images):
    main_window.show_run(trained_run)
    assert main_window.evaluation_panel.message.text() == ""
    _import(qtbot, main_window, tiny_images)                         # not the dataset the run was trained on
    for panel in (main_window.evaluation_panel, main_window.export_panel):
        assert panel.message.kind == "note" and "trained on another dataset" in panel.message.text()
    main_window.state.set_run(None)                                   # a newer run (here: none) makes it stale
    assert main_window.evaluation_panel.message.text() == main_window.export_panel.message.text() == ""


def test_new_project_and_exporting_leave_no_stale_screen(qtbot, main_window, trained_run):
    window = main_window
    window.show_run(trained_run)
    monitor = window.training_monitor
    monitor.settings.show_plan(("Recipe: auto, time budget 10 min.",))
    monitor.progress.setFormat("Finished")
    assert monitor.point_counts()["val_loss"] and monitor.log.toPlainText()
    window.new_project()                                              # the last project's plan, curves, "Finished"
    assert not any(monitor.point_counts().values()) and monitor.log.toPlainText() == ""
    assert monitor.progress.format() == "Idle" and not monitor.settings.plan_shown
    window.show_run(trained_run)                                      # a finished run, not exported yet
    panel = window.evaluation_panel
    assert not panel.show_heatmaps() and panel.message.text().startswith("Export the run first")
    from desktop_tl.core.deploy.export import ExportResult

    window.state.set_export(ExportResult("model.onnx", 1, 18, {"batch_1": 0.0}, True, {}))   # exported it
    assert panel.message.text() == ""


def test_the_project_file_runs_and_labels_change_only_through_announced_setters(qtbot, tmp_path):
    from desktop_tl.gui.state import AppState

    state = AppState()
    with qtbot.waitSignal(state.sig_project_file_changed) as moved:
        state.set_project_file(tmp_path / "p.dtlproj")
    assert moved.args == [tmp_path / "p.dtlproj"] and state.project_file == tmp_path / "p.dtlproj"
    with qtbot.waitSignal(state.sig_runs_changed) as runs:
        state.set_run(tmp_path / "runs" / "one")
    assert runs.args == [[str(tmp_path / "runs" / "one")]]
    state.runs.append("not recorded")                                  # a copy: the state keeps its own
    assert state.runs == [str(tmp_path / "runs" / "one")]
    with qtbot.waitSignal(state.sig_labels_csv_changed):
        state.set_labels_csv(tmp_path / "labels.csv")
    with qtbot.assertNotEmitted(state.sig_project_file_changed):
        state.set_project_file(tmp_path / "p.dtlproj")                 # unchanged: nothing to announce
    for name in ("runs", "project_file", "labels_csv"):
        with pytest.raises(AttributeError):
            setattr(state, name, None)


def test_two_projects_saved_in_one_folder_keep_their_own_runs_and_confirmed_labels(main_window, tmp_path):
    window = main_window
    folder = tmp_path / "studies"
    folder.mkdir()
    owned = {}
    for name in ("chest", "knee"):
        window.new_project()
        assert window.save_project(folder / name)
        runs_base = window.training_monitor.runs_base()
        run = runs_base / f"{name}-run"
        run.mkdir(parents=True)
        (run / "run.json").write_text("{}")
        owned[name] = (runs_base, window.label_assist.labels_csv_target())
    assert owned["chest"] == (folder / "chest.runs", folder / "chest.confirmed.csv")
    assert owned["knee"] == (folder / "knee.runs", folder / "knee.confirmed.csv")
    assert [run.path.name for run in window.training_monitor.project_runs()] == ["knee-run"]
    assert window.open_project(folder / "chest.dtlproj")
    assert [run.path.name for run in window.training_monitor.project_runs()] == ["chest-run"]
    assert window.label_assist.labels_csv_target() == folder / "chest.confirmed.csv"
    window.new_project()
    assert window.state.project_file is None and window.training_monitor.runs_base().name == "desktop_tl_runs"


def test_a_project_sharing_the_old_confirmed_labels_file_is_offered_its_own_copy_once(qtbot, main_window, tmp_path):
    window = main_window
    folder = tmp_path / "studies"
    (folder / "scans").mkdir(parents=True)
    shared = folder / "confirmed_labels.csv"                          # what earlier versions wrote for every project
    shared.write_text("path,label\nscans/a.png,grass\n")
    for name in ("chest", "knee"):
        window.state.set_labels_csv(shared)
        assert window.save_project(folder / name)
        window.new_project()
    offers = []
    window.ask_own_labels_file = lambda old, new: offers.append((old, new)) or new.stem.startswith("chest")
    assert window.open_project(folder / "chest.dtlproj")
    own = folder / "chest.confirmed.csv"
    assert offers == [(shared, own)] and window.state.labels_csv == own
    assert read_confirmed(own) == {"scans/a.png": "grass"} and shared.read_text().count("\n") == 2  # shared kept
    assert json.loads((folder / "chest.dtlproj").read_text())["labels_csv"] == own.name
    assert not window.has_unsaved_changes()
    assert window.open_project(folder / "knee.dtlproj")               # declined: it keeps the shared file...
    assert window.state.labels_csv == shared and len(offers) == 2
    assert window.open_project(folder / "knee.dtlproj")               # ...and is not asked again
    assert window.open_project(folder / "chest.dtlproj") and len(offers) == 2


def test_quitting_during_an_import_stops_it_first_then_offers_to_save_the_project_as_it_was(
        qtbot, main_window, tiny_index, tmp_path, monkeypatch):
    window = main_window
    window.state.set_dataset(tiny_index)
    assert window.save_project(tmp_path / "study.dtlproj")
    other = copy_demo_subset(tmp_path / "other", 40, ("grass", "gravel"))
    questions = []
    del window.ask_stop_running_job                                   # the window's own question, answered Yes
    monkeypatch.setattr(QMessageBox, "question", lambda _parent, title, text, *_args: questions.append(text)
                        or QMessageBox.StandardButton.Yes)
    asked_while_busy = []
    window.ask_save_changes = lambda before="quitting": asked_while_busy.append(window.controller.busy) or "save"
    window.state.update_config(epochs=3)                              # an unsaved change, so the question comes
    assert window.dataset_panel.import_path(other)
    window.close()
    assert len(questions) == 1 and questions[0].startswith("The dataset import is still running")
    assert "keeps the dataset it had before this import" in questions[0] and "Training" not in questions[0]
    assert asked_while_busy == [False]                                # stopped first, then asked
    saved = load_project(tmp_path / "study.dtlproj")
    assert saved.data_source == tiny_index.source and saved.config.epochs == 3     # not the abandoned import


def test_new_project_and_open_offer_to_save_unsaved_work_first(qtbot, main_window, tiny_index, tmp_path):
    window = main_window
    other = tmp_path / "other.dtlproj"
    assert window.save_project(other)
    window.new_project()
    window.state.set_dataset(tiny_index)                              # unsaved work: a dataset
    answers, asked = iter(["cancel", "cancel", "discard"]), []
    window.ask_save_changes = lambda before="quitting": asked.append(before) or next(answers)
    window.new_project()                                              # Cancel: nothing is lost
    assert window.state.dataset is tiny_index
    assert not window.open_project(other)                             # Open (and Open recent) ask too
    assert window.state.dataset is tiny_index
    window.new_project()                                              # Discard
    assert window.state.dataset is None
    assert asked == ["starting a new project", "opening another project", "starting a new project"]
    window.state.set_dataset(tiny_index)
    window.ask_save_changes = lambda before="quitting": "save"
    window.project_file = tmp_path / "kept.dtlproj"
    assert window.open_project(other)                                 # Save, then open
    assert load_project(tmp_path / "kept.dtlproj").data_source == tiny_index.source
