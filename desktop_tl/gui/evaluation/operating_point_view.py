"""The Evaluation panel's operating point: the ROC curves of validation and test with a marker to drag, the
threshold chosen by target sensitivity, target specificity or Youden's J on validation, sensitivity,
specificity, PPV and NPV with their 95% intervals updating live, and Save, which stores the threshold with
the run (core.evaluation.operating_point.choose_decision; two-class runs). With more classes each class can
be looked at against the rest (one-vs-rest). The figures are computed from the scores in metrics.json, so
nothing is run again while the marker moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_tl.core.decision import Decision
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.metrics import one_vs_rest_scores
from desktop_tl.core.evaluation.operating_point import (
    choose_decision,
    choose_operating_threshold,
    operating_point,
    roc_curve,
)
from desktop_tl.core.reporting import operating_point_text
from desktop_tl.gui.widgets.number_box import DecimalBox
from desktop_tl.gui.widgets.unit_square_plot import unit_square_plot

CHOICES = (("youden", "Best balanced accuracy (Youden)"), ("sensitivity", "Target sensitivity"),
           ("specificity", "Target specificity"), ("fixed", "Threshold set by hand"))
SPLIT_NAMES = (("val", "Validation"), ("test", "Test"))
COLOURS = {"val": (31, 119, 180), "test": (214, 39, 40)}


class OperatingPointView(QWidget):
    """ROC curves with a draggable threshold marker, the choice of threshold, live figures and Save."""

    sig_saved = Signal(object)
    """core.decision.Decision saved in the run's run.json."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("operatingPoint")
        self.run_dir: Path | None = None
        self.label_sets = False
        self.scores: dict[str, dict[str, Any]] = {}
        self.curves: dict[str, dict[str, list[float]]] = {}
        self.threshold = 0.5

        self.plot = unit_square_plot("1 − specificity (false alarms among negatives)", "sensitivity", 160)
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.3)
        item.addLegend(offset=(-10, -10))
        self.lines = {key: item.plot([], [], pen=pg.mkPen(COLOURS[key], width=2), name=name)
                      for key, name in SPLIT_NAMES}
        self.marker = pg.TargetItem(pos=(0, 0), size=14, movable=True, pen=pg.mkPen(COLOURS["val"], width=2))
        self.marker.setToolTip("Drag along the validation curve to move the threshold")
        item.addItem(self.marker)
        self.test_dot = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(COLOURS["test"]))
        item.addItem(self.test_dot)

        self.class_box = QComboBox(self)
        self.class_box.setToolTip("For more than two classes: the class against all the others (one-vs-rest)")
        self.metrics: dict[str, Any] | None = None
        self.choice = QComboBox(self)
        for key, name in CHOICES:
            self.choice.addItem(name, key)
        self.target = DecimalBox("The target", self, decimals=2, minimum=0.01, maximum=1.0, singleStep=0.01, value=0.95)
        self.target.setToolTip("The share of positives to find (sensitivity) or of negatives to clear "
                               "(specificity), reached on the validation images")
        self.threshold_box = DecimalBox("The threshold", self, decimals=3, minimum=0.0, maximum=1.0, singleStep=0.01)
        self.threshold_box.setToolTip("The positive class is called when its (calibrated) probability is at "
                                      "least this")
        self.save_button = QPushButton("Save threshold", self)
        self.save_button.setToolTip("Store this threshold with the run: evaluate, export, predict and Try it "
                                    "use it (export again to carry it)")
        self.figures = QLabel(self)
        self.figures.setObjectName("operatingPointFigures")
        self.figures.setWordWrap(True)
        self.note = QLabel("No scores to draw the curves from: press Evaluate to compute them for this run.", self)
        self.note.setWordWrap(True)

        controls = QGridLayout()
        self.class_label = QLabel("Class", self)
        controls.addWidget(self.class_label, 2, 0)
        controls.addWidget(self.class_box, 2, 1)
        controls.addWidget(QLabel("Choose by", self), 0, 0)
        controls.addWidget(self.choice, 0, 1)
        controls.addWidget(self.target, 0, 2)
        controls.addWidget(QLabel("Threshold", self), 1, 0)
        controls.addWidget(self.threshold_box, 1, 1)
        controls.addWidget(self.save_button, 1, 2)
        controls.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addLayout(controls)
        layout.addWidget(self.figures)
        layout.addWidget(self.plot, 1)

        self.choice.currentIndexChanged.connect(lambda _: self._apply_choice())
        self.class_box.currentIndexChanged.connect(lambda _: self._show_class())
        self.target.valueChanged.connect(lambda _: self._apply_choice())
        self.threshold_box.valueChanged.connect(self._on_threshold_typed)
        self.marker.sigPositionChanged.connect(self._on_marker_moved)
        self.save_button.clicked.connect(lambda: self.save())
        self.show_metrics(None, None)

    # -- input -------------------------------------------------------------------------------------------
    def show_metrics(self, metrics: dict[str, Any] | None, run_dir: Path | None) -> None:
        """Show a run's scores (metrics.json), starting at its saved threshold: the positive class of a
        two-class run, or one class against the rest for more classes (chosen in the Class box)."""
        self.run_dir, self.metrics = run_dir, metrics
        classes = list((metrics or {}).get("classes") or [])
        self.label_sets = (metrics or {}).get("task") == "multi_label"      # a label at a time, at its threshold
        multi = self.label_sets or (len(classes) > 2 and any("class_scores" in ((metrics or {}).get(k) or {})
                                                             for k, _ in SPLIT_NAMES))
        self.class_box.blockSignals(True)
        self.class_box.clear()
        self.class_box.addItems(classes if multi else [])
        self.class_box.blockSignals(False)
        self.class_label.setText("Label" if self.label_sets else "Class")
        for widget in (self.class_box, self.class_label):
            widget.setVisible(multi)
        self._show_class()

    def _show_class(self) -> None:
        metrics, run_dir = self.metrics, self.run_dir
        classes = list((metrics or {}).get("classes") or [])
        name = self.class_box.currentText()
        self.scores = {key: (one_vs_rest_scores((metrics or {}).get(key) or {}, classes, name) if name else
                             ((metrics or {}).get(key) or {}).get("scores")) for key, _ in SPLIT_NAMES}
        self.scores = {k: v for k, v in self.scores.items() if isinstance(v, dict) and v.get("probability")}
        usable = "val" in self.scores
        for widget in (self.choice, self.target, self.threshold_box, self.plot, self.figures):
            widget.setEnabled(usable)
        self.save_button.setEnabled(usable and run_dir is not None and not name)
        self.save_button.setToolTip("Store this threshold with the run: evaluate, export, predict and Try it use "
                                    "it (export again to carry it)" if not name else
                                    "Each label's threshold was chosen on validation when the run finished; these "
                                    "curves show how one label fares (saving another is not available yet)."
                                    if self.label_sets else
                                    "A threshold is stored for two-class models; with more classes the most "
                                    "probable class is predicted, and these curves show how one class fares.")
        self.note.setVisible(not usable)
        self.curves = {key: roc_curve(self._is_positive(key), s["probability"]) for key, s in self.scores.items()}
        for key, line in self.lines.items():
            curve = self.curves.get(key)
            line.setData(curve["fpr"] if curve else [], curve["tpr"] if curve else [])
        decision = (metrics or {}).get("decision") if not name else None
        if self.label_sets and name:         # the label's own threshold
            decision = {"threshold": metrics["label_rules"]["thresholds"][classes.index(name)]}
        if usable:
            start = decision["threshold"] if isinstance(decision, dict) and "threshold" in decision else 0.5
            self.choice.blockSignals(True)
            self.choice.setCurrentIndex(3)          # the saved threshold, until another choice is made
            self.choice.blockSignals(False)
            self.set_threshold(start)
        else:
            self.figures.setText("")

    def _is_positive(self, split: str) -> list[bool]:
        return [bool(v) for v in self.scores[split]["is_positive"]]

    @property
    def positive(self) -> str | None:
        """The class the threshold applies to."""
        return self.scores["val"]["positive"] if "val" in self.scores else None

    # -- the threshold -----------------------------------------------------------------------------------
    def set_threshold(self, threshold: float) -> None:
        """Move the threshold: the markers, the box and the figures follow."""
        self.threshold = float(min(1.0, max(0.0, threshold)))
        self.threshold_box.blockSignals(True)
        self.threshold_box.setValue(self.threshold)
        self.threshold_box.blockSignals(False)
        points = {key: operating_point(self._is_positive(key), s["probability"], self.threshold)
                  for key, s in self.scores.items()}
        self.marker.blockSignals(True)
        self.marker.setPos(*self._roc_xy(points["val"]))
        self.marker.blockSignals(False)
        self.test_dot.setData(*([[v] for v in self._roc_xy(points["test"])] if "test" in points else [[], []]))
        lines = [f"{self.positive!r} when its probability is at least {self.threshold:.3f}:"]
        lines += [f"{name}: {operating_point_text(points[key], decimals=0)}" for key, name in SPLIT_NAMES if key in points]
        self.figures.setText("\n".join(lines))

    @staticmethod
    def _roc_xy(point: dict[str, Any]) -> tuple[float, float]:
        spec, sens = point["specificity"]["value"], point["sensitivity"]["value"]
        return (1.0 - spec if spec is not None else 0.0), (sens if sens is not None else 0.0)

    def _apply_choice(self) -> None:
        criterion = self.choice.currentData()
        self.target.setEnabled(criterion in ("sensitivity", "specificity"))
        if criterion == "fixed" or "val" not in self.scores:
            return
        val = self.scores["val"]
        self.set_threshold(choose_operating_threshold(self._is_positive("val"), val["probability"], criterion,
                                                      self.target.value()))

    @Slot(float)
    def _on_threshold_typed(self, value: float) -> None:
        self._by_hand()
        self.set_threshold(value)

    def _on_marker_moved(self) -> None:
        """Snap the dragged marker to the nearest point of the validation curve and take its threshold."""
        curve = self.curves.get("val")
        if not curve:
            return
        pos = self.marker.pos()
        distance = (np.asarray(curve["fpr"]) - pos.x()) ** 2 + (np.asarray(curve["tpr"]) - pos.y()) ** 2
        self._by_hand()
        self.set_threshold(curve["threshold"][int(distance.argmin())])

    def _by_hand(self) -> None:
        self.choice.blockSignals(True)
        self.choice.setCurrentIndex(3)
        self.choice.blockSignals(False)
        self.target.setEnabled(False)

    # -- saving -----------------------------------------------------------------------------------------
    def save(self) -> Decision | None:
        """Save the threshold with the run (chosen on validation by the current choice); None when refused."""
        if self.run_dir is None:
            return None
        criterion = self.choice.currentData()
        target = self.threshold if criterion == "fixed" else self.target.value()
        try:
            decision = choose_decision(self.run_dir, criterion, target)
        except UserError as exc:
            self.figures.setText(f"Not saved: {exc.what} {exc.hint}")
            return None
        self.set_threshold(decision.threshold)
        self.sig_saved.emit(decision)
        return decision
