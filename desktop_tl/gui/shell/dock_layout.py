"""The window's layout: one dock per panel, the default arrangement and how it shares out the space, and the
window's first-start size."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

from desktop_tl.gui.widgets.panel_support import FRAME_ROOM

DEFAULT_WINDOW_SIZE = QSize(1400, 900)
MINIMUM_WINDOW_SIZE = QSize(800, 560)      # below this the panels scroll more than they show


def default_window_size(available: QSize) -> QSize:
    """The first-start size: 1400x900, or the screen's free area less the window frame and title bar when that
    is smaller (a 1366x768 laptop: else the status bar would sit below the screen's edge until maximised)."""
    return DEFAULT_WINDOW_SIZE.boundedTo(available - FRAME_ROOM).expandedTo(MINIMUM_WINDOW_SIZE)


def panel_dock(window: QMainWindow, title: str, panel: QWidget) -> QDockWidget:
    """A dock for one panel, inside a scroll area: a panel may be shrunk below its natural size (small
    screens) and then scrolls instead of overlapping its neighbours."""
    dock = QDockWidget(title, window)
    dock.setObjectName(f"dock_{panel.objectName()}")
    scroll = QScrollArea(dock)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(panel)
    dock.setWidget(scroll)
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                     | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                     | QDockWidget.DockWidgetFeature.DockWidgetClosable)
    return dock


def arrange_docks(window: QMainWindow, dataset: QWidget, models: QWidget, layers: QWidget, training: QWidget,
                  evaluation: QWidget, export: QWidget, monitor: QWidget) -> dict[str, QDockWidget]:
    """The default layout: dataset over training | models over tabs of layers, evaluation, export and monitor.
    Returns the docks by their panel's objectName."""
    titled = ((dataset, "Dataset"), (models, "Models"), (layers, "Layers to train"), (training, "Training"),
              (evaluation, "Evaluation"), (export, "Export"), (monitor, "Monitor"))
    docks = {panel.objectName(): panel_dock(window, title, panel) for panel, title in titled}
    dataset_dock, models_dock, layers_dock, training_dock, evaluation_dock, export_dock, monitor_dock = (
        docks[panel.objectName()] for panel, _title in titled)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dataset_dock)
    window.splitDockWidget(dataset_dock, models_dock, Qt.Orientation.Horizontal)
    window.splitDockWidget(dataset_dock, training_dock, Qt.Orientation.Vertical)
    window.splitDockWidget(models_dock, layers_dock, Qt.Orientation.Vertical)
    window.tabifyDockWidget(layers_dock, evaluation_dock)
    window.tabifyDockWidget(evaluation_dock, export_dock)
    window.tabifyDockWidget(export_dock, monitor_dock)
    layers_dock.raise_()
    return docks


def share_default_sizes(window: QMainWindow, docks: dict[str, QDockWidget]) -> None:
    """Share out the space of the default layout (effective once the window has its size)."""
    dataset, models, training = docks["datasetImport"], docks["modelBrowser"], docks["trainingMonitor"]
    width, height = window.width(), window.height()
    window.resizeDocks([dataset, models], [int(width * 0.58), int(width * 0.42)], Qt.Orientation.Horizontal)
    window.resizeDocks([dataset, training], [int(height * 0.42), int(height * 0.58)], Qt.Orientation.Vertical)
    window.resizeDocks([models, docks["freezeTree"]], [int(height * 0.46), int(height * 0.54)],
                       Qt.Orientation.Vertical)
