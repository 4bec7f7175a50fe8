"""The training panel's live curves: loss and accuracy per batch and per epoch, redrawn at ~15 Hz.

Points are buffered in growing numpy arrays and pushed to pyqtgraph curves by a timer, never once per
batch; the loss axis widens in coarse steps, so axes need no re-layout while points arrive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QGraphicsItem, QHBoxLayout, QWidget

REDRAW_MS = 66  # ~15 Hz
EPOCH_FIGURES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


class SeriesBuffer:
    """x/y points in growing float64 arrays (amortised O(1) append, no copy on read)."""

    def __init__(self, capacity: int = 256) -> None:
        self.x = np.empty(capacity, dtype=np.float64)
        self.y = np.empty(capacity, dtype=np.float64)
        self.n = 0
        self.dirty = False

    def append(self, x: float, y: float) -> None:
        """Add one point (NaN values are kept; pyqtgraph leaves a gap)."""
        if self.n == self.x.size:
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n], self.y[self.n] = x, y
        self.n += 1
        self.dirty = True

    def clear(self) -> None:
        """Forget every point."""
        self.n = 0
        self.dirty = True


def _styled_plot(title: str, y_label: str, legend_offset: tuple[int, int]) -> pg.PlotWidget:
    widget = pg.PlotWidget(background="w")
    item = widget.getPlotItem()
    item.setTitle(title, color="#333333", size="10pt")
    item.setLabel("bottom", "epoch", color="#333333")
    item.setLabel("left", y_label, color="#333333")
    for axis in ("left", "bottom"):
        item.getAxis(axis).setPen("#888888")
        item.getAxis(axis).setTextPen("#333333")
        # Repaint an unchanged axis from a cached pixmap: drawing tick labels is the costliest part of a redraw.
        item.getAxis(axis).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        item.getAxis(axis).enableAutoSIPrefix(False)      # "loss" ticks 0.2-0.8, not "loss (x0.001)" 200-800
    item.showGrid(x=True, y=True, alpha=0.2)
    item.setDownsampling(auto=True, mode="peak")
    item.setClipToView(True)
    # one row of entries along the top edge, so the legend does not sit on the curves
    item.addLegend(offset=legend_offset, labelTextColor="#333333", brush=pg.mkBrush(255, 255, 255, 200),
                   colCount=3)
    widget.setMinimumHeight(160)
    return widget


class TrainingCurves(QWidget):
    """Loss and accuracy plots side by side, fed by `add_batch` and `add_epoch`."""

    CURVES = {  # name: (plot, legend, colour, width, symbol)
        "batch_loss": ("loss", "train (batch)", "#90caf9", 1, None),
        "train_loss": ("loss", "train", "#1565c0", 2, "o"),
        "val_loss": ("loss", "validation", "#ef6c00", 2, "o"),
        "batch_accuracy": ("accuracy", "train (batch)", "#a5d6a7", 1, None),
        "train_accuracy": ("accuracy", "train", "#2e7d32", 2, "o"),
        "val_accuracy": ("accuracy", "validation", "#ef6c00", 2, "o"),
    }

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_plot = _styled_plot("Loss", "loss", (-8, 8))                 # legend top right
        self.accuracy_plot = _styled_plot("Accuracy", "accuracy", (-8, -8))    # legend bottom right
        self.accuracy_plot.getPlotItem().setYRange(0.0, 1.0, padding=0.02)
        self._loss_top = 0.0             # upper end of the loss axis; grows in steps, see _grow_loss_range
        plots = {"loss": self.loss_plot, "accuracy": self.accuracy_plot}
        self.series: dict[str, SeriesBuffer] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        for name, (plot, legend, colour, width, symbol) in self.CURVES.items():
            self.series[name] = SeriesBuffer()
            style = {"pen": pg.mkPen(colour, width=width), "name": legend}
            if symbol:
                style.update(symbol=symbol, symbolSize=6, symbolBrush=colour, symbolPen=colour)
            self.curves[name] = plots[plot].plot(**style)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.accuracy_plot)
        self.redraw_timer = QTimer(self, interval=REDRAW_MS)
        self.redraw_timer.timeout.connect(self.flush)

    def add_batch(self, x: float, loss: float, accuracy: float) -> None:
        """One training batch, at `x` epochs (fractional)."""
        self.series["batch_loss"].append(x, loss)
        self.series["batch_accuracy"].append(x, accuracy)

    def add_epoch(self, epoch: int, figures: dict[str, Any]) -> None:
        """The figures of one finished epoch (EPOCH_FIGURES); rows that lack one are skipped."""
        try:
            points = {name: float(figures[name]) for name in EPOCH_FIGURES}
        except (KeyError, TypeError, ValueError):
            return
        for name, value in points.items():
            self.series[name].append(float(epoch), value)

    def show_history(self, history: Iterable[dict[str, Any]]) -> None:
        """Plot the finished epochs of a run (its history rows) at once."""
        for row in history:
            if isinstance(row, dict) and isinstance(row.get("epoch"), (int, float)):
                self.add_epoch(row["epoch"], row)
        self.flush()

    @Slot()
    def flush(self) -> None:
        """Push buffered points to the curves that changed (called by the redraw timer)."""
        changed = False
        for name, series in self.series.items():
            if series.dirty:
                self.curves[name].setData(series.x[:series.n], series.y[:series.n])
                series.dirty = False
                changed = True
        if changed:
            self._grow_loss_range()

    def _grow_loss_range(self) -> None:
        """Widen the loss axis in coarse steps when a point would leave it (never on every redraw)."""
        top = 0.0
        for name in ("batch_loss", "train_loss", "val_loss"):
            series = self.series[name]
            values = series.y[:series.n]
            finite = values[np.isfinite(values)]
            if finite.size:
                top = max(top, float(finite.max()))
        if top <= self._loss_top:
            return
        step = 10 ** math.floor(math.log10(top)) / 2 if top > 0 else 0.5
        self._loss_top = math.ceil(top * 1.05 / step) * step
        self.loss_plot.getPlotItem().setYRange(0.0, self._loss_top, padding=0.02)

    def set_epoch_range(self, epochs: int) -> None:
        """Fix the x axis to the run's epochs, so the axes need no re-layout while points arrive."""
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.getPlotItem().setXRange(0.0, float(max(1, epochs)), padding=0.02)

    def clear(self) -> None:
        """Empty every curve (a new run starts)."""
        for series in self.series.values():
            series.clear()
        self._loss_top = 0.0
        self.flush()

    def point_counts(self) -> dict[str, int]:
        """Points drawn per curve (for checks and tests)."""
        return {name: 0 if curve.getData()[0] is None else len(curve.getData()[0])
                for name, curve in self.curves.items()}
