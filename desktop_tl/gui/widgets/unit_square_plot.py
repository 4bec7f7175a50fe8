"""A plot of rates against rates: both axes 0 to 1, with the dashed diagonal (chance for a ROC curve, perfect
calibration for a reliability diagram)."""

from __future__ import annotations

import pyqtgraph as pg


def unit_square_plot(x_label: str, y_label: str, min_height: int) -> pg.PlotWidget:
    """A white plot over [0, 1] x [0, 1] with these axis labels and the diagonal drawn dashed."""
    plot = pg.PlotWidget(background="w")
    plot.setMinimumHeight(min_height)
    item = plot.getPlotItem()
    item.setLabel("bottom", x_label)
    item.setLabel("left", y_label)
    item.setXRange(0, 1, padding=0.02)
    item.setYRange(0, 1, padding=0.02)
    item.plot([0, 1], [0, 1], pen=pg.mkPen((150, 150, 150), style=pg.QtCore.Qt.PenStyle.DashLine))
    return plot
