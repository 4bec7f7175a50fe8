"""The Evaluation panel's referral view: how often the model answers and how often it is wrong when it does,
at every confidence threshold (the risk-coverage curve of one split), with the threshold the run chose, the
target it was chosen for, and the share of images the check for unfamiliar images flags."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

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
    error (horizontal dashed line)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("referralView")
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

    def curve_points(self) -> tuple[list[float], list[float]]:
        """The curve drawn (for checks and tests)."""
        xs, ys = self.curve.getData()
        return ([] if xs is None else [float(x) for x in xs]), ([] if ys is None else [float(y) for y in ys])
