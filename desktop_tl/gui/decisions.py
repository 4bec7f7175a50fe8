"""What an expert decided image by image in a labelling grid (label review, label assist), with undo."""

from __future__ import annotations

from typing import Generic, TypeVar

Decision = TypeVar("Decision")


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
