"""Evaluation panel fed with the real metrics of a real tiny run (the session `trained_run`)."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt

from desktop_tl.gui.evaluation.evaluation_panel import EVALUATE_JOB, EvaluationPanel
from desktop_tl.gui.widgets.item_models import PATH_ROLE, SORT_ROLE


@pytest.fixture
def metrics(trained_run) -> dict:
    return json.loads((trained_run / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture
def panel(qtbot, app_state, controller):
    widget = EvaluationPanel(app_state, controller)
    qtbot.addWidget(widget)
    widget.resize(1000, 700)
    widget.show()
    yield widget
    widget.close()


def _matrix(panel: EvaluationPanel) -> list[list[int]]:
    model = panel.matrix_model
    return [[model.data(model.index(r, c), SORT_ROLE) for c in range(model.columnCount())]
            for r in range(model.rowCount())]


def _off_diagonal_cell(matrix: list[list[int]]) -> tuple[int, int]:
    cells = [(r, c) for r, row in enumerate(matrix) for c, n in enumerate(row) if r != c and n]
    assert cells, "the tiny run made no mistakes; the fixture should be barely trained"
    return cells[0]


def test_shows_summary_cautions_matrix_and_per_class_table(qtbot, panel, app_state, trained_run, metrics):
    app_state.set_run(trained_run)
    app_state.set_metrics(metrics)

    test = metrics["test"]
    assert panel.split == "test"
    text = panel.summary.text()
    assert f"{test['images']} images" in text and "95% interval" in text
    assert "balanced accuracy" in text and "macro F1" in text and "ROC AUC" in text
    assert f"{test['accuracy'] * 100:.1f}%" in text
    assert _matrix(panel) == test["confusion_matrix"]
    assert [panel.matrix_model.headerData(i, Qt.Orientation.Vertical) for i in range(len(metrics["classes"]))] \
        == metrics["classes"]
    assert panel.cautions.isVisible() == bool(metrics["cautions"])
    for caution in metrics["cautions"]:
        assert caution in panel.cautions.text()

    rows = panel.class_model
    assert rows.rowCount() == len(metrics["classes"])
    for r, name in enumerate(metrics["classes"]):
        assert rows.data(rows.index(r, 0)) == name
        assert rows.data(rows.index(r, 4), SORT_ROLE) == test["per_class"][name]["support"]
        assert rows.data(rows.index(r, 2), SORT_ROLE) == test["per_class"][name]["recall"]

    assert panel.gallery_model.rowCount() == len(test["misclassified"])

    panel.set_split("val")
    assert _matrix(panel) == metrics["val"]["confusion_matrix"]
    assert panel.summary.text().startswith("Validation:")
    # a model trained on train+val: its "validation" figures are out-of-fold, and the panel says so
    app_state.set_metrics(dict(metrics, val_source="out-of-fold predictions of cross-validation"))
    panel.set_split("val")
    assert panel.summary.text().startswith("Cross-validated (out-of-fold):")


def test_clicking_a_cell_filters_the_gallery(qtbot, panel, app_state, trained_run, metrics):
    app_state.set_run(trained_run)
    app_state.set_metrics(metrics)
    test = metrics["test"]
    row, column = _off_diagonal_cell(test["confusion_matrix"])
    true, predicted = metrics["classes"][row], metrics["classes"][column]

    rect = panel.matrix.visualRect(panel.matrix_model.index(row, column))
    qtbot.mouseClick(panel.matrix.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    assert panel.cell == (row, column)
    expected = [m for m in test["misclassified"] if m["true"] == true and m["predicted"] == predicted]
    gallery = panel.gallery_model
    assert gallery.rowCount() == len(expected) == test["confusion_matrix"][row][column]
    for r in range(gallery.rowCount()):
        assert gallery.data(gallery.index(r)).startswith(f"{true} → {predicted}")
        path = gallery.data(gallery.index(r), PATH_ROLE)
        assert gallery.data(gallery.index(r)).endswith(f"\n{path.name}")      # the file's name under the tile
        assert path.is_file() and path.as_posix().endswith(expected[r]["path"])
    assert f"predicted as {predicted!r}" in panel.gallery_note.text()
    # The thumbnail of a mistake really loads from the run's dataset.
    with qtbot.waitSignal(panel.thumbnails.sig_ready, timeout=10_000):
        gallery.data(gallery.index(0), Qt.ItemDataRole.DecorationRole)
    pixmap = gallery.data(gallery.index(0), Qt.ItemDataRole.DecorationRole)
    assert pixmap.cacheKey() not in (panel.thumbnails.placeholder.cacheKey(), panel.thumbnails.broken_pixmap.cacheKey())

    diagonal = next(r for r in range(len(metrics["classes"])) if test["confusion_matrix"][r][r])
    panel.matrix.clicked.emit(panel.matrix_model.index(diagonal, diagonal))
    assert gallery.rowCount() == 0 and "classified correctly" in panel.gallery_note.text()

    qtbot.mouseClick(panel.show_all_button, Qt.MouseButton.LeftButton)
    assert panel.cell is None and gallery.rowCount() == len(test["misclassified"])


def test_evaluate_button_reruns_the_run_on_the_worker(qtbot, panel, app_state, trained_run, metrics):
    assert not panel.evaluate_button.isEnabled()
    app_state.set_run(trained_run)
    assert panel.evaluate_button.isEnabled()
    with qtbot.waitSignal(app_state.sig_metrics_changed, timeout=120_000) as changed:
        qtbot.mouseClick(panel.evaluate_button, Qt.MouseButton.LeftButton)
        assert not panel.evaluate_button.isEnabled()
    fresh = changed.args[0]
    assert fresh["checkpoint"] == "best" and fresh["classes"] == metrics["classes"]
    assert fresh["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert _matrix(panel) == fresh["test"]["confusion_matrix"]
    assert panel.evaluate_button.isEnabled() and not panel.message.isVisible()


def test_evaluate_failure_is_shown_and_panel_keeps_working(qtbot, panel, app_state, tmp_path, trained_run, metrics):
    app_state.set_run(tmp_path / "not_a_run")
    with qtbot.waitSignal(panel.jobs.sig_failed, timeout=30_000) as failed:
        assert panel.evaluate()
    assert failed.args[0] == EVALUATE_JOB
    assert panel.message.kind == "error" and "holds no desktop_tl run" in panel.message.text()

    app_state.set_run(trained_run)
    app_state.set_metrics(metrics)
    assert _matrix(panel) == metrics["test"]["confusion_matrix"]
    app_state.set_metrics(None)
    assert panel.matrix_model.rowCount() == 0 and panel.gallery_model.rowCount() == 0


def test_a_planted_result_that_misses_half_the_positives_is_cautioned_in_words(qtbot, panel, app_state):
    from desktop_tl.core.evaluation.metrics import cautions

    from helpers import planted_inspection_result

    test = planted_inspection_result()
    app_state.set_metrics({"classes": ["good", "defective"], "val": test, "test": test,
                           "cautions": cautions([], {"good": 1800, "defective": 900}, test)})
    assert panel.cautions.isVisible()
    assert "misses 108 of 205 'defective' test images" in panel.cautions.text()
    assert "always answering 'good' would score 65.8%" in panel.summary.text()


def _two_class_run(tmp_path, with_paths: bool = False):
    """A finished two-class run folder whose metrics hold known validation and test scores (with the images'
    paths, as runs now store them, when asked)."""
    import numpy as np

    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.evaluation.metrics import compute_metrics
    from desktop_tl.core.runs.folder import RunInfo, write_run_info

    rng = np.random.default_rng(3)
    classes = ["good", "defective"]
    metrics = {"classes": classes, "decision": None, "cautions": []}
    for split, n in (("val", 60), ("test", 60)):
        labels = np.array([0] * (2 * n // 3) + [1] * (n // 3))
        positive = np.where(labels == 1, rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.6, n))
        paths = [f"{split}/{i}.png" for i in range(n)] if with_paths else ()
        metrics[split] = compute_metrics(labels, np.stack([1 - positive, positive], 1), classes, paths)
    run = tmp_path / "run"
    run.mkdir()
    write_run_info(RunInfo(run, TrainConfig(), SplitConfig(), classes, "finished"))
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run, metrics


def test_the_operating_point_moves_live_with_the_marker_and_is_saved_with_the_run(
        qtbot, panel, app_state, controller, tmp_path):
    from desktop_tl.core.evaluation.operating_point import choose_operating_threshold, operating_point
    from desktop_tl.core.reporting import operating_point_text
    from desktop_tl.core.runs.folder import open_run

    run, metrics = _two_class_run(tmp_path)
    app_state.set_run(run)
    app_state.set_metrics(metrics)
    view = panel.operating_point
    val = metrics["val"]["scores"]
    assert view.positive == "defective" and view.save_button.isEnabled() and view.note.isHidden()

    view.choice.setCurrentIndex([view.choice.itemData(i) for i in range(view.choice.count())].index("sensitivity"))
    view.target.setValue(0.9)
    expected = choose_operating_threshold([bool(v) for v in val["is_positive"]], val["probability"], "sensitivity", 0.9)
    assert view.threshold == pytest.approx(expected)
    point = operating_point([bool(v) for v in val["is_positive"]], val["probability"], view.threshold)
    assert point["sensitivity"]["value"] >= 0.9 and operating_point_text(point, decimals=0) in view.figures.text()
    assert "Test: sensitivity" in view.figures.text()

    view.marker.setPos(1.0, 1.0)                     # dragged to the top right: every image called positive
    assert view.threshold == pytest.approx(min(val["probability"])) and view.choice.currentData() == "fixed"
    view.marker.setPos(0.0, 0.0)                     # bottom left: nothing called
    assert view.threshold > max(val["probability"]) - 1e-6 and "sensitivity 0%" in view.figures.text()
    view.threshold_box.setValue(0.5)
    decision = view.save()
    assert decision is not None and open_run(run).decision == decision
    assert decision.threshold == pytest.approx(0.5) and decision.criterion == "a threshold set by hand"
    qtbot.waitUntil(lambda: not controller.busy, timeout=30_000)   # the re-evaluation (fails: no checkpoint)


def test_saving_a_threshold_shows_its_figures_at_once_from_the_stored_scores(qtbot, panel, app_state, controller,
                                                                              tmp_path):
    import numpy as np

    from desktop_tl.core.evaluation.metrics import compute_metrics

    run, metrics = _two_class_run(tmp_path, with_paths=True)
    app_state.set_run(run)
    app_state.set_metrics(metrics)
    view = panel.operating_point
    view.choice.setCurrentIndex([view.choice.itemData(i) for i in range(view.choice.count())].index("fixed"))
    view.threshold_box.setValue(0.35)
    with qtbot.assertNotEmitted(controller.sig_busy_changed):        # no job: arithmetic on the stored scores
        decision = view.save()
    shown = app_state.metrics
    for split in ("val", "test"):
        scores = metrics[split]["scores"]
        labels = np.array(scores["is_positive"])
        positive = np.array(scores["probability"])
        expected = compute_metrics(labels, np.stack([1 - positive, positive], 1), ["good", "defective"],
                                   scores["paths"], decision=decision)
        assert shown[split]["confusion_matrix"] == expected["confusion_matrix"]
        assert shown[split]["operating_point"]["threshold"] == pytest.approx(0.35)
    assert shown["decision"]["threshold"] == pytest.approx(0.35)
    assert "from the stored validation and test scores" in panel.message.text()


def test_the_calibration_tab_draws_the_reliability_diagram(qtbot, panel, app_state, tmp_path):
    run, metrics = _two_class_run(tmp_path)
    app_state.set_metrics(metrics)
    panel.set_split("test")
    assert panel.reliability.bar_heights() == [row["accuracy"] for row in metrics["test"]["reliability"]]
    assert f"{metrics['test']['ece']:.3f}" in panel.reliability.text.text()


def test_the_referral_tab_draws_the_risk_coverage_curve_with_the_chosen_point(qtbot, panel, app_state, tmp_path):
    import numpy as np

    from desktop_tl.core.evaluation.referral import choose_referral, referral_report, risk_coverage_curves

    _, metrics = _two_class_run(tmp_path)
    rng = np.random.default_rng(5)
    splits = {}
    for split in ("val", "test"):
        labels = rng.integers(0, 2, 200)
        sure = rng.uniform(0.5, 1.0, 200)
        right = rng.uniform(0, 1, 200) < sure
        positive = np.where(labels == 1, sure, 1 - sure)
        positive = np.where(right, positive, 1 - positive)
        splits[split] = (labels, np.stack([1 - positive, positive], 1))
    referral = choose_referral(*splits["val"], metrics["classes"], target=0.1)
    metrics["referral"] = referral_report(referral, None, metrics["classes"], splits)
    metrics["risk_coverage"] = risk_coverage_curves(None, metrics["classes"], splits)
    metrics["unfamiliar"] = {"threshold": 812.5, "flagged_share": 0.05, "chosen_on": "validation",
                             "test": {"images": 200, "flagged": 9, "share": 0.045, "ci95": [0.024, 0.083]}}
    app_state.set_metrics(metrics)
    panel.set_split("test")
    view = panel.referral
    xs, ys = view.curve_points()
    assert xs == metrics["risk_coverage"]["test"]["coverage"] and ys == metrics["risk_coverage"]["test"]["error"]
    assert view.chosen.isVisible() and view.chosen.value() == pytest.approx(metrics["referral"]["test"]["coverage"])
    assert view.target.value() == pytest.approx(0.1)
    words = view.text.text()
    answered = metrics["referral"]["test"]
    assert f"answered {answered['answered'] / 200:.1%} ({answered['answered']}/200" in words
    assert "flagged unfamiliar 4.5% (9/200" in words and "Referral: answer when" in words
    panel.set_split("val")
    assert panel.referral.chosen.value() == pytest.approx(metrics["referral"]["val"]["coverage"])
    app_state.set_metrics(dict(metrics, referral=None))          # the check for unfamiliar images alone
    assert "No referral rule" in panel.referral.text.text() and not panel.referral.chosen.isVisible()
    assert panel.referral.curve_points()[0] == metrics["risk_coverage"]["val"]["coverage"]   # still drawn
    error = 1 - metrics["val"]["accuracy"]
    assert f"answered all (no referral rule); error among answered {error:.1%}" in panel.referral.text.text()
    app_state.set_metrics(dict(metrics, referral=None, unfamiliar=None))
    assert "answers every image" in panel.referral.text.text()


def test_with_more_classes_each_class_is_looked_at_against_the_rest(qtbot, panel, app_state, trained_run, metrics):
    from desktop_tl.core.evaluation.metrics import one_vs_rest_scores
    from desktop_tl.core.evaluation.operating_point import operating_point

    app_state.set_run(trained_run)
    app_state.set_metrics(metrics)
    view = panel.operating_point
    classes = metrics["classes"]
    assert len(classes) > 2 and not view.class_box.isHidden() and view.note.isHidden()
    assert [view.class_box.itemText(i) for i in range(view.class_box.count())] == classes
    view.class_box.setCurrentIndex(2)
    assert view.positive == classes[2] and not view.save_button.isEnabled()   # no threshold for more classes
    view.threshold_box.setValue(0.3)
    val = one_vs_rest_scores(metrics["val"], classes, classes[2])
    point = operating_point([bool(v) for v in val["is_positive"]], val["probability"], 0.3)
    assert f"sensitivity {point['sensitivity']['value']:.0%}" in view.figures.text()
    app_state.set_metrics({"classes": classes, "val": {"images": 0}, "test": {"images": 0}})   # an old run
    assert not view.note.isHidden() and not view.save_button.isEnabled()


def test_export_report_writes_the_html_on_the_worker_and_says_so(qtbot, panel, app_state, trained_run, metrics,
                                                                 tmp_path):
    app_state.set_run(trained_run)
    app_state.set_metrics(metrics)
    target = tmp_path / "lab report.html"
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000):
        assert panel.export_report(target)
    assert "<h2>Confusion matrix" in target.read_text(encoding="utf-8")
    assert panel.message.kind == "note" and "lab report.html" in panel.message.text()


def test_export_report_without_a_run_is_a_clear_message(qtbot, panel, app_state):
    assert not panel.export_report()
    assert panel.message.kind == "error" and "no run to report on" in panel.message.text()


def test_the_subgroups_tab_breaks_the_test_figures_down(qtbot, panel, app_state, tmp_path):
    run, metrics = _two_class_run(tmp_path)
    metrics["subgroups"] = {"test": {"site": {
        "north": {"images": 30, "accuracy": 0.9, "accuracy_95ci": [0.74, 0.97], "balanced_accuracy": 0.88,
                  "positive": "defective", "sensitivity": 0.8, "positives": 10},
        "south": {"images": 30, "accuracy": 0.6, "accuracy_95ci": [0.42, 0.75], "balanced_accuracy": 0.55,
                  "positive": "defective", "sensitivity": 0.3, "positives": 10}}}}
    app_state.set_metrics(metrics)
    view = panel.subgroups
    assert view.attribute.currentText() == "site" and view.table.rowCount() == 2
    assert view.cell_text(1, 0) == "south" and view.cell_text(1, 2) == "60.0% (42%–75%)"
    assert view.cell_text(1, 4) == "30% of 10 'defective'"
    app_state.set_metrics({"classes": ["a", "b"]})
    assert view.table.rowCount() == 0 and "No subgroups" in view.note.text()


def test_review_labels_runs_on_the_worker_then_opens_the_grid_or_says_there_is_nothing(
        qtbot, panel, app_state, trained_run, metrics):
    app_state.set_run(trained_run)
    app_state.set_metrics(metrics)
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=120_000):
        qtbot.mouseClick(panel.review_button, Qt.MouseButton.LeftButton)
    review = getattr(panel, "review", None)
    if review is not None:
        assert review.isVisible() and review.model.rowCount() == len(review.suspects) > 0
        review.close()
    else:
        assert "No suspected label errors" in panel.message.text()


def test_where_it_looked_shows_the_mistakes_with_the_exported_models_heat_maps(qtbot, panel, app_state, trained_run,
                                                                                tmp_path):
    import shutil

    from desktop_tl.core.deploy.export import export_onnx

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    app_state.set_run(run)
    app_state.set_metrics(json.loads((run / "metrics.json").read_text(encoding="utf-8")))
    panel.heatmap_box.setChecked(True)                             # not exported yet: a note, box unticked
    assert not panel.heatmap_box.isChecked() and "Export the run first" in panel.message.text()
    export_onnx(run)
    with qtbot.waitSignal(panel.jobs.sig_result, timeout=120_000):
        panel.heatmap_box.setChecked(True)
    model = panel.gallery_model
    assert model.rowCount() > 0, "the tiny run made no mistakes; the fixture should be barely trained"
    assert all(item.picture is not None for item in model.items)
    assert "where the exported model looked" in model.data(model.index(0), Qt.ItemDataRole.ToolTipRole)
    panel.heatmap_box.setChecked(False)                            # back to plain thumbnails
    assert all(item.picture is None for item in model.items)


def test_double_clicking_a_mistake_shows_it_larger(qtbot, panel, app_state, trained_run, metrics):
    app_state.set_run(trained_run)
    app_state.set_metrics(metrics)
    model = panel.gallery_model
    assert model.rowCount() > 0
    panel.show_large(model.index(0))
    viewer = panel.viewer
    qtbot.addWidget(viewer)
    assert viewer.isVisible() and viewer.image.pixmap() is not None and not viewer.image.pixmap().isNull()
    assert max(viewer.image.pixmap().width(), viewer.image.pixmap().height()) > panel.thumbnails.size
    viewer.close()


def test_the_referral_tab_chooses_the_target_again_and_the_figures_follow(qtbot, panel, app_state, trained_run,
                                                                         tmp_path):
    import shutil

    from desktop_tl.core.runs.folder import RunFolder

    run = trained_run.with_name("run_referral_tab")           # beside it: the dataset's relative path holds
    shutil.copytree(trained_run, run)
    try:
        app_state.set_run(run)
        app_state.set_metrics(RunFolder(run).metrics())
        view = panel.referral
        assert view.run_dir == run
        view.target_box.setCurrentIndex(view.target_box.findData(0.0))     # off: always possible
        with qtbot.waitSignal(panel.jobs.sig_result, timeout=60_000) as done:
            qtbot.mouseClick(view.save_button, Qt.MouseButton.LeftButton)
        assert done.args[0] == EVALUATE_JOB and RunFolder(run).info().referral is None
        assert panel.message.text().startswith("Saved with the run. Referral is off")
        assert "Export the run again" in panel.message.text() and not (app_state.metrics or {}).get("referral")
        view.target_box.setCurrentIndex(view.target_box.findData(0.01))   # 8 validation images: too few for 1%
        assert not view.save() and view.text.text().startswith("Not saved:")
    finally:
        shutil.rmtree(run)
