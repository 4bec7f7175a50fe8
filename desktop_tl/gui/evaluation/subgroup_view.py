"""The Evaluation panel's subgroups: the test figures per value of one attribute (a CSV column such as site,
or a DICOM tag such as Modality), to see whether the model works as well for each group."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

COLUMNS = ("group", "test images", "accuracy (95% interval)", "balanced accuracy", "sensitivity")


class SubgroupView(QWidget):
    """An attribute to break the test figures down by, and one row per group."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("subgroups")
        self.groups: dict[str, dict[str, Any]] = {}
        self.attribute = QComboBox(self)
        self.note = QLabel(self, wordWrap=True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        row = QHBoxLayout()
        row.addWidget(QLabel("Break down by", self))
        row.addWidget(self.attribute, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)
        self.attribute.currentIndexChanged.connect(lambda _: self._show_attribute())
        self.show_metrics(None)

    def show_metrics(self, metrics: dict[str, Any] | None) -> None:
        """Offer the attributes of a metrics dict's test subgroups."""
        self.groups = ((metrics or {}).get("subgroups") or {}).get("test") or {}
        self.attribute.blockSignals(True)
        self.attribute.clear()
        self.attribute.addItems(list(self.groups))
        self.attribute.blockSignals(False)
        self.attribute.setEnabled(bool(self.groups))
        self.note.setText("" if self.groups else
                          "No subgroups: the test images have no attribute with more than one value to compare "
                          "(a CSV's extra columns such as site or scanner, or the DICOM tags Modality, Manufacturer "
                          "and BodyPartExamined).")
        self._show_attribute()

    def _show_attribute(self) -> None:
        rows = self.groups.get(self.attribute.currentText(), {})
        self.table.setRowCount(len(rows))
        for r, (value, row) in enumerate(rows.items()):
            low, high = row["accuracy_95ci"]
            sensitivity = (f"{row['sensitivity']:.0%} of {row['positives']} {row['positive']!r}"
                           if row.get("sensitivity") is not None else "n/a")
            balanced = "n/a" if row.get("balanced_accuracy") is None else f"{row['balanced_accuracy']:.1%}"
            cells = (value, str(row["images"]), f"{row['accuracy']:.1%} ({low:.0%}–{high:.0%})", balanced, sensitivity)
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def cell_text(self, row: int, column: int) -> str:
        """The text of one cell (for checks and tests)."""
        item = self.table.item(row, column)
        return item.text() if item is not None else ""
