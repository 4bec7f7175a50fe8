"""Label assist in the window: unlabelled images in a grid, those where a label would help most first (the
smallest margin between the model's two most probable classes), each with the suggested class, its probability
and the heat map of where the model looked. The expert confirms or corrects them a batch at a time, by mouse or
keyboard:

- Enter (or double-click, or "Accept suggestion"): take the suggestion, 1-9 and 0 for the tenth (or the class
  buttons): that class, arrows: move, Ctrl+Z: undo within the batch.

Next batch, Save, Retrain and Close write the batch's confirmed labels to the labels CSV (core.data.confirmed,
atomically, paths relative to the CSV; the user's files are never moved or copied). Retrain asks the window for a
new run that starts from the current model on the dataset plus these images."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_tl.core.data.confirmed import save_confirmed
from desktop_tl.core.deploy.label_assist import Suggestion
from desktop_tl.core.errors import UserError
from desktop_tl.gui.widgets.decisions import DECIDED_TONE, UndoableDecisions, class_key, class_of_key
from desktop_tl.gui.widgets.item_models import ImageItem, ImageListModel
from desktop_tl.gui.widgets.panel_support import resize_within_screen
from desktop_tl.gui.widgets.thumbnails import ThumbnailCache

BATCH = 24
TILE = 128
CLASS_BUTTONS_PER_ROW = 5
HELP = ("Enter or double-click: accept the suggestion · 1-9, 0: that class · arrows: move · "
        "Ctrl+Z: undo (this batch). Confirmed labels are saved at Next batch, Save, Retrain and Close; images left unconfirmed stay unlabelled.")


def _button_text(position: int, name: str, longest: int = 20) -> str:
    """A class button's text: its key and the class name, a long name shortened (the tooltip holds it whole)."""
    shown = name if len(name) <= longest else name[:longest - 1] + "…"
    return f"{class_key(position)}: {shown}" if class_key(position) else shown


class UnlabelledDialog(QDialog):
    """The label-assist grid; `decisions` maps an image (path relative to the labels CSV) to its class for the
    current batch, until saved."""

    sig_saved = Signal(object, int)
    """(labels CSV path, how many images it lists) after confirmed labels were written."""
    sig_retrain = Signal(object)
    """The labels CSV, saved: retrain with it."""

    def __init__(self, suggestions: list[Suggestion], classes: list[str], labels_csv: Path,
                 parent: QWidget | None = None, batch: int = BATCH) -> None:
        super().__init__(parent)
        self.setObjectName("unlabelledAssist")
        self.setWindowTitle("Label unlabelled images")
        self.suggestions, self.classes, self.labels_csv, self.batch = suggestions, classes, Path(labels_csv), batch
        self.start = 0
        self.decisions: UndoableDecisions[str] = UndoableDecisions()
        self.saved = 0                           # images confirmed in this dialog and written
        self.thumbnails = ThumbnailCache(size=TILE, parent=self)
        self.model = ImageListModel(self.thumbnails, self)
        self.grid = QListView(self)
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(TILE, TILE))
        self.grid.setGridSize(QSize(TILE + 48, TILE + 64))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setModel(self.model)
        self.grid.installEventFilter(self)
        self.grid.doubleClicked.connect(lambda _index: self.accept_suggestion())
        self.heatmap_box = QCheckBox("Heat maps", self)
        self.heatmap_box.setToolTip("Show where the model looked for the class it suggests (from the exported model).")
        has_heatmaps = any(s.heatmap is not None for s in suggestions)
        self.heatmap_box.setChecked(has_heatmaps)
        self.heatmap_box.setEnabled(has_heatmaps)
        self.heatmap_box.toggled.connect(lambda _on: self._refresh())
        self.accept_button = QPushButton("Accept suggestion", self)
        self.accept_button.clicked.connect(lambda: self.accept_suggestion())
        self.class_buttons = [QPushButton(_button_text(i, name), self) for i, name in enumerate(classes)]
        for button, name in zip(self.class_buttons, classes, strict=True):
            button.setToolTip(f"Label the image {name!r}")
            button.clicked.connect(lambda _checked=False, label=name: self.decide(label))
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)      # the keyboard stays on the grid after a click
        self.undo_button = QPushButton("Undo", self)
        self.undo_button.clicked.connect(lambda: self.undo())
        self.next_button = QPushButton("Next batch", self)
        self.next_button.clicked.connect(lambda: self.next_batch())
        self.save_button = QPushButton("Save", self)
        self.save_button.clicked.connect(lambda: self.save())
        self.retrain_button = QPushButton("Retrain…", self)
        self.retrain_button.setToolTip("Train a new run that starts from the current model, on the dataset plus the "
                                       "images confirmed here (in the training split).")
        self.retrain_button.clicked.connect(lambda: self.retrain())
        close = QPushButton("Close", self)
        close.clicked.connect(self.close)
        for button in (self.accept_button, self.undo_button, self.next_button, self.save_button, self.retrain_button,
                       close, *self.class_buttons):
            button.setAutoDefault(False)
        self.status = QLabel(self, wordWrap=True)

        choices = QHBoxLayout()
        choices.addWidget(self.accept_button)
        choices.addWidget(self.undo_button)
        choices.addStretch(1)
        choices.addWidget(self.heatmap_box)
        class_rows = QGridLayout()      # CLASS_BUTTONS_PER_ROW a row, so that many classes still fit a small screen
        for i, button in enumerate(self.class_buttons):
            class_rows.addWidget(button, *divmod(i, CLASS_BUTTONS_PER_ROW))
        actions = QHBoxLayout()
        actions.addWidget(self.status, 1)
        for button in (self.next_button, self.save_button, self.retrain_button, close):
            actions.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{len(suggestions)} unlabelled images, those where your label helps the model most "
                                "first. Check each suggestion: it is the model's guess.", self, wordWrap=True))
        layout.addWidget(QLabel(HELP, self, wordWrap=True))
        layout.addWidget(self.grid, 1)
        layout.addLayout(choices)
        layout.addLayout(class_rows)
        layout.addLayout(actions)
        resize_within_screen(self, 980, 680)
        self._refresh()
        self._go_to(0)

    # -- the batch -----------------------------------------------------------------------------------------
    def shown(self) -> list[Suggestion]:
        """The suggestions of the current batch."""
        return self.suggestions[self.start:self.start + self.batch]

    def current(self) -> Suggestion | None:
        """The image under the cursor."""
        row, shown = self.grid.currentIndex().row(), self.shown()
        return shown[row] if 0 <= row < len(shown) else None

    def _go_to(self, row: int) -> None:
        if self.shown():
            self.grid.setCurrentIndex(self.model.index(max(0, min(row, len(self.shown()) - 1))))

    # -- decisions -----------------------------------------------------------------------------------------
    def decide(self, label: str) -> None:
        """Confirm the current image as `label`, then move to the next one."""
        suggestion = self.current()
        if suggestion is None:
            return
        row = self.grid.currentIndex().row()
        self.decisions.decide(suggestion.path, label)
        self._refresh()
        self._go_to(row + 1)
        self.grid.setFocus()        # after a class button too: the next key goes to the grid

    def accept_suggestion(self) -> None:
        """Confirm the current image as the model suggests."""
        suggestion = self.current()
        if suggestion is not None:
            self.decide(suggestion.suggested)

    def undo(self) -> None:
        """Take back the last decision of this batch and return to its image."""
        path = self.decisions.undo()
        if path is None:
            return
        self._refresh()
        self._go_to(next(i for i, s in enumerate(self.shown()) if s.path == path))

    def eventFilter(self, watched, event) -> bool:
        if watched is self.grid and isinstance(event, QKeyEvent) and event.type() == QKeyEvent.Type.KeyPress:
            return self._key(event)
        return super().eventFilter(watched, event)

    def _key(self, event: QKeyEvent) -> bool:
        text = event.text()
        if event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.accept_suggestion()
        elif (label := class_of_key(text, self.classes)) is not None:
            self.decide(label)
        else:
            return False
        return True

    def _refresh(self) -> None:
        heat = self.heatmap_box.isChecked()
        items = []
        for s in self.shown():
            chosen = self.decisions.get(s.path)
            first = f"✔ {chosen}" if chosen else f"{s.probability:.0%} {s.suggested}?"   # what matters first: seen
            items.append(ImageItem(self.labels_csv.parent / s.path, f"{first}\n{Path(s.path).name}",
                                   f"{s.path}\nThe model suggests {s.suggested!r} ({s.probability:.0%}); the margin "
                                   f"to the next class is {s.margin:.2f}." + (f" You chose {chosen!r}." if chosen
                                                                              else ""),
                                   s.heatmap if heat else None, DECIDED_TONE if chosen else None))
        row = self.grid.currentIndex().row()
        self.model.set_items(items)
        self._go_to(row)
        batches = max(1, -(-len(self.suggestions) // self.batch))
        self.status.setText(f"Batch {self.start // self.batch + 1} of {batches}: {len(self.decisions)} of "
                            f"{len(self.shown())} confirmed. {self.saved} saved in {self.labels_csv.name}.")
        self.undo_button.setEnabled(self.decisions.can_undo())
        self.next_button.setEnabled(self.start + self.batch < len(self.suggestions))

    # -- saving --------------------------------------------------------------------------------------------
    def save(self) -> bool:
        """Write this batch's confirmed labels to the labels CSV (atomically); False (and why) when it failed."""
        if not self.decisions:
            return True
        try:
            listed = save_confirmed(self.labels_csv, self.decisions)
        except UserError as exc:
            self.status.setText(f"Not saved: {exc.what} {exc.hint}")
            return False
        self.saved += len(self.decisions)
        self.decisions = UndoableDecisions()
        self.sig_saved.emit(self.labels_csv, listed)
        self._refresh()
        return True

    def next_batch(self) -> bool:
        """Save the batch, then show the next one (undo starts afresh)."""
        if self.start + self.batch >= len(self.suggestions) or not self.save():
            return False
        self.start += self.batch
        self.decisions.forget_changes()
        self._refresh()
        self._go_to(0)
        return True

    def retrain(self) -> bool:
        """Save, then ask for a new run with the confirmed labels and close."""
        if not self.save():
            return False
        if not self.labels_csv.is_file():
            self.status.setText("Confirm at least one image first: nothing would be added to the dataset.")
            return False
        self.sig_retrain.emit(self.labels_csv)
        self.close()
        return True

    def done(self, result: int) -> None:
        """Save the batch's confirmed labels, then close (Close, Escape, the window's close button); stay open
        when they cannot be written."""
        if not self.save():
            return
        self.thumbnails.shutdown()
        super().done(result)
