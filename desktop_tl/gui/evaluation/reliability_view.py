"""The Evaluation panel's calibration view: the reliability diagram of one split (how often the model is
right against how sure it said it was) and its expected calibration error, before and after the
temperature scaling fitted on validation."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop_tl.gui.widgets.unit_square_plot import unit_square_plot


def calibration_text(metrics: dict[str, Any] | None, split: str) -> str:
    """The calibration of a split in words: the temperature and the error before and after it."""
    m = (metrics or {}).get(split) or {}
    if m.get("ece") is None:
        return "No calibration figures for this run (it was trained before they existed, or has no images here)."
    report = (metrics or {}).get("calibration")
    text = f"Calibration error (ECE) {m['ece']:.3f}: the probabilities shown are off by that much on average."
    if isinstance(report, dict) and report.get(f"{split}_ece_before") is not None:
        text = (f"Probabilities calibrated on validation (temperature {report['temperature']:.2f}): calibration "
                f"error {report[f'{split}_ece_before']:.3f} before, {m['ece']:.3f} after. Every probability "
                "shown in the app is the calibrated one.")
    return text + " Bars on the diagonal: a model that says 80% is right 80% of the time."


class ReliabilityView(QWidget):
    """Bars: the accuracy of the images in each confidence bin; the dashed diagonal is perfect calibration."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("reliabilityDiagram")
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.plot = unit_square_plot("confidence (top probability)", "accuracy", 140)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.09, brush=pg.mkBrush(31, 119, 180, 160))
        self.plot.getPlotItem().addItem(self.bars)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text)
        layout.addWidget(self.plot, 1)

    def show_split(self, metrics: dict[str, Any] | None, split: str) -> None:
        """Draw the reliability bins of `split` ("val" or "test") from a metrics dict."""
        rows = ((metrics or {}).get(split) or {}).get("reliability") or []
        self.bars.setOpts(x=[(r["lower"] + r["upper"]) / 2 for r in rows], height=[r["accuracy"] for r in rows],
                          width=0.09)
        self.text.setText(calibration_text(metrics, split))

    def bar_heights(self) -> list[float]:
        """The accuracies drawn (for checks and tests)."""
        return [float(h) for h in self.bars.opts.get("height", [])]
