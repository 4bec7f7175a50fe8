"""Review suspected label errors (core.training.label_review): a grid of the suspects, most suspect first,
each with its given and suggested class. The expert decides image by image, by mouse or keyboard:

- Enter: take the suggestion (relabel), K: keep the given label, X: leave the image out,
  1-9 (0 for the tenth class): relabel as that class, arrows: move, Ctrl+Z: undo the last decision.

Save writes the decisions to the run's label_review.json and a labels CSV of the whole dataset with the
corrections (core.data.labels_csv): the user's files are never moved; importing that CSV trains on the
corrected labels."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFileDialog, QLabel, QListView, QVBoxLayout, QWidget

from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.data.labels_csv import write_labels_csv
from desktop_tl.core.errors import UserError
from desktop_tl.core.training.label_review import Suspect, save_decisions
from desktop_tl.gui.widgets.decisions import DECIDED_TONE, LEFT_OUT_TONE, UndoableDecisions, class_key, class_of_key
from desktop_tl.gui.widgets.item_models import ImageItem, ImageListModel
from desktop_tl.gui.widgets.panel_support import resize_within_screen
from desktop_tl.gui.widgets.thumbnails import ThumbnailCache

HELP = ("Enter: take the suggestion · K: keep the label · X: leave the image out · 1-9, 0: relabel as that class · "
        "arrows: move · Ctrl+Z: undo")


class LabelReviewDialog(QDialog):
    """The review grid; `decisions` maps a path to {"action", "label"} as the expert decides."""

    def __init__(self, run_dir: Path, index: DatasetIndex, suspects: list[Suspect],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("labelReview")
        self.setWindowTitle("Review suspected label errors")
        self.run_dir, self.index, self.suspects = Path(run_dir), index, suspects
        self.decisions: UndoableDecisions[dict[str, str]] = UndoableDecisions()
        self.thumbnails = ThumbnailCache(parent=self)
        self.model = ImageListModel(self.thumbnails, self)
        self.grid = QListView(self)
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        side = self.thumbnails.size
        self.grid.setIconSize(QSize(side, side))
        self.grid.setGridSize(QSize(side + 60, side + 78))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setModel(self.model)
        self.grid.installEventFilter(self)
        classes = ", ".join(f"{class_key(i)}: {name}" for i, name in enumerate(index.classes[:10]))
        self.status = QLabel(self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close, self)
        buttons.accepted.connect(lambda: self.save())
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{len(suspects)} images whose label a model that never saw them contradicts. "
                                "Each may be a hard image rather than a mistake: look before you decide.", self))
        layout.addWidget(QLabel(f"{HELP}. Classes: {classes}.", self, wordWrap=True))
        layout.addWidget(self.grid, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        resize_within_screen(self, 900, 600)
        self._refresh()
        if suspects:
            self.grid.setCurrentIndex(self.model.index(0))

    # -- decisions ---------------------------------------------------------------------------------------
    def current(self) -> Suspect | None:
        """The suspect under the cursor."""
        row = self.grid.currentIndex().row()
        return self.suspects[row] if 0 <= row < len(self.suspects) else None

    def decide(self, action: str, label: str | None = None) -> None:
        """Record a decision for the current image ("keep", "relabel" with a class, "exclude"), then move on."""
        suspect = self.current()
        if suspect is None:
            return
        self.decisions.decide(suspect.path, {"action": action} | ({"label": label} if label else {}))
        row = self.grid.currentIndex().row()
        self._refresh()
        self.grid.setCurrentIndex(self.model.index(min(row + 1, len(self.suspects) - 1)))

    def undo(self) -> None:
        """Take back the last decision and return to its image."""
        path = self.decisions.undo()
        if path is None:
            return
        self._refresh()
        self.grid.setCurrentIndex(self.model.index(next(i for i, s in enumerate(self.suspects) if s.path == path)))

    def eventFilter(self, watched, event) -> bool:
        if watched is self.grid and isinstance(event, QKeyEvent) and event.type() == QKeyEvent.Type.KeyPress:
            return self._key(event)
        return super().eventFilter(watched, event)

    def _key(self, event: QKeyEvent) -> bool:
        suspect, key, text = self.current(), event.key(), event.text().lower()
        if event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif suspect is not None and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.decide("relabel", suspect.suggested)
        elif suspect is not None and text == "k":
            self.decide("keep")
        elif suspect is not None and text == "x":
            self.decide("exclude")
        elif suspect is not None and (label := class_of_key(text, self.index.classes)) is not None:
            self.decide("relabel", label)
        else:
            return False
        return True

    def _refresh(self) -> None:
        items = []
        for s in self.suspects:
            decision = self.decisions.get(s.path)
            verdict = ("" if decision is None else "✔ kept\n" if decision["action"] == "keep" else
                       "✖ left out\n" if decision["action"] == "exclude" else f"→ {decision['label']}\n")
            tone = None if decision is None else LEFT_OUT_TONE if decision["action"] == "exclude" else DECIDED_TONE
            items.append(ImageItem(self.index.root / s.path,     # the decision first, where the tile shows it
                                   f"{verdict}labelled {s.given} ({s.given_probability:.0%})\n"
                                   f"looks like {s.suggested} ({s.suggested_probability:.0%})\n{Path(s.path).name}",
                                   s.path, tone=tone))
        self.model.set_items(items)
        self.status.setText(f"{len(self.decisions)} of {len(self.suspects)} decided.")

    # -- saving -------------------------------------------------------------------------------------------
    def save(self, labels_csv: Path | None = None) -> Path | None:
        """Write the decisions and the corrected labels CSV (asking where unless given); its path, or None."""
        if labels_csv is None:
            chosen, _ = QFileDialog.getSaveFileName(self, "Corrected labels", str(self.index.root / "labels.csv"),
                                                    "Labels CSV (*.csv)")
            if not chosen:
                return None
            labels_csv = Path(chosen)
        relabel = {p: d["label"] for p, d in self.decisions.items() if d["action"] == "relabel"}
        reasons = {s.path: f"suspected wrong label: given {s.given!r}, the model says {s.suggested!r}"
                   for s in self.suspects}
        exclude = {p: f"left out in label review, {reasons[p]}" for p, d in self.decisions.items()
                   if d["action"] == "exclude"}
        try:
            save_decisions(self.run_dir, self.decisions)
            rows = write_labels_csv(self.index, labels_csv, relabel, exclude)
        except UserError as exc:
            self.status.setText(f"Not saved: {exc.what} {exc.hint}")
            return None
        self.status.setText(f"Saved: {labels_csv.name} lists {rows} images ({len(relabel)} relabelled, "
                            f"{len(exclude)} left out). Import it to train on the corrected labels.")
        return labels_csv

    def done(self, result: int) -> None:
        self.thumbnails.shutdown()
        super().done(result)
