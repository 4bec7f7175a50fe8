"""The Evaluation panel's referral view: how often the model answers and how often it is wrong when it does,
at every confidence threshold (the risk-coverage curve of one split), with the threshold the run chose, the
target it was chosen for, and the share of images the check for unfamiliar images flags. Below it, the target
can be chosen again on the held-out predictions the run kept (core.evaluation.referral_target: no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.referral import TARGETS
from desktop_tl.core.reporting import status_lines


def referral_text(metrics: dict[str, Any] | None, split: str) -> str:
    """The referral rule and its figures in words, for the split shown."""
    metrics = metrics or {}
    if not metrics.get("referral") and not metrics.get("unfamiliar"):
        return ("This run answers every image: referral was turned off, too few held-out images set a rule, or "
                "the run was trained before desktop_tl could refer images to a person.")
    lines = status_lines(metrics)
    rules = [line for line in lines if line.startswith(("Referral", "Unfamiliar"))]
    if not metrics.get("referral"):
        rules.append("No referral rule (turned off, or too few held-out images to set one): every familiar image "
                     "is answered.")
    shown = "test" if split == "test" else ("validation", "cross-validation")
    figures = [line for line in lines if line.startswith(shown)]
    return "\n".join(rules + figures + ["The curve: the error among the images answered, against the share answered, "
                                        "as the confidence threshold is lowered (left: only the surest images)."])


class ReferralView(QWidget):
    """The risk-coverage curve of a split, the chosen threshold's coverage (vertical line) and the target
    error (horizontal dashed line); the target chosen again with Save target."""

    sig_saved = Signal(str)
    """(what the new rule does, in words) a referral target was saved in the run."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("referralView")
        self.run_dir: Path | None = None
        self.target_box = QComboBox(self)
        self.target_box.setObjectName("referTarget")
        self.target_box.addItem("off (answer every familiar image)", 0.0)
        for target in TARGETS:
            self.target_box.addItem(f"keep errors within {target:.0%}", target)
        self.save_button = QPushButton("Save target", self)
        self.save_button.setToolTip("Choose the referral threshold again for this target, on the held-out "
                                    "predictions the run kept (no training), and save it with the run")
        self.save_button.clicked.connect(lambda: self.save())
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(140)
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "share of images answered")
        item.setLabel("left", "error among answered")
        item.getAxis("left").enableAutoSIPrefix(False)       # rates read as 0.05, not "50 (x0.001)"
        item.setXRange(0, 1, padding=0.02)
        self.curve = item.plot([], [], pen=pg.mkPen((31, 119, 180), width=2))
        self.chosen = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((214, 39, 40), width=2),
                                      label="chosen", labelOpts={"position": 0.9, "color": (214, 39, 40)})
        self.target = pg.InfiniteLine(angle=0, movable=False,
                                      pen=pg.mkPen((120, 120, 120), style=Qt.PenStyle.DashLine),
                                      label="target", labelOpts={"position": 0.1, "color": (90, 90, 90)})
        item.addItem(self.chosen)
        item.addItem(self.target)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text)
        layout.addWidget(self.plot, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Refer to a person:", self))
        row.addWidget(self.target_box, 1)
        row.addWidget(self.save_button)
        layout.addLayout(row)

    def show_split(self, metrics: dict[str, Any] | None, split: str) -> None:
        """Draw the curve of `split` ("val" or "test") and the run's rule from a metrics dict."""
        referral = (metrics or {}).get("referral") or {}
        curve = ((metrics or {}).get("risk_coverage") or {}).get(split) or {"coverage": [], "error": []}
        self.curve.setData(curve["coverage"], curve["error"])
        coverage = (referral.get(split) or {}).get("coverage")
        self.chosen.setVisible(coverage is not None)
        if coverage is not None:
            self.chosen.setValue(coverage)
        self.target.setVisible("target" in referral)
        if "target" in referral:
            self.target.setValue(referral["target"])
        top = max(list(curve["error"]) + [referral.get("target", 0.0)]) * 1.15
        self.plot.getPlotItem().setYRange(0, top or 0.1, padding=0.02)
        self.text.setText(referral_text(metrics, split))
        shown = referral.get("target", 0.0)
        self.target_box.setCurrentIndex(max(0, self.target_box.findData(shown)))
        lowest = referral.get("lowest_target")
        if lowest:
            self.text.setText(self.text.text() + f"\nAt {lowest['target']:.0%} the model would answer "
                              f"{lowest['coverage']:.0%} of the held-out images: choose it below and Save target.")

    def save(self) -> bool:
        """Save the chosen target with the run (the threshold chosen again on its held-out predictions)."""
        if self.run_dir is None:
            return False
        from desktop_tl.core.evaluation.referral_target import choose_referral_target  # numpy: only when asked

        try:
            _referral, words = choose_referral_target(self.run_dir, float(self.target_box.currentData()))
        except UserError as exc:
            self.text.setText(f"Not saved: {exc.what} {exc.hint}")
            return False
        self.sig_saved.emit(words)
        return True

    def curve_points(self) -> tuple[list[float], list[float]]:
        """The curve drawn (for checks and tests)."""
        xs, ys = self.curve.getData()
        return ([] if xs is None else [float(x) for x in xs]), ([] if ys is None else [float(y) for y in ys])
