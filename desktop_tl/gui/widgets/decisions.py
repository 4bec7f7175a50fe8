"""What an expert decided image by image in a labelling grid (label review, label assist), with undo."""

from __future__ import annotations

from typing import Generic, TypeVar

Decision = TypeVar("Decision")

DECIDED_TONE = "#dcedc8"       # the tile of an image decided in a labelling grid (light green)
LEFT_OUT_TONE = "#ffcdd2"      # the tile of an image left out in label review (light red)


def class_key(position: int) -> str:
    """The key that gives an image the class at `position` in a labelling grid: 1-9, then 0 for the tenth;
    "" beyond (those classes take the mouse)."""
    return str(position + 1) if position < 9 else "0" if position == 9 else ""


def class_of_key(text: str, classes: list[str]) -> str | None:
    """The class a typed key gives (see `class_key`), or None."""
    return next((name for i, name in enumerate(classes) if text and class_key(i) == text), None)


class UndoableDecisions(dict[str, Decision], Generic[Decision]):
    """Decisions by image path, remembering each change so that `undo` takes the last one back."""

    def __init__(self) -> None:
        super().__init__()
        self._changes: list[tuple[str, Decision | None]] = []

    def decide(self, path: str, decision: Decision) -> None:
        """Record `decision` for the image at `path` (replacing an earlier one)."""
        self._changes.append((path, self.get(path)))
        self[path] = decision

    def undo(self) -> str | None:
        """Take back the last change; the path it concerned, or None when there is nothing to undo."""
        if not self._changes:
            return None
        path, before = self._changes.pop()
        if before is None:
            self.pop(path, None)
        else:
            self[path] = before
        return path

    def can_undo(self) -> bool:
        """True when a change can be taken back."""
        return bool(self._changes)

    def forget_changes(self) -> None:
        """Keep the decisions, but let undo start afresh (a new batch)."""
        self._changes.clear()
