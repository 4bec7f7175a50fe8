"""Number fields that take what is typed: the value changes when typing ends (Enter, Tab or a click elsewhere),
not on every keystroke, so a settings round trip never rewrites the text half-way through "0.15"; a number out
of range stays visible while typed and, when typing ends, is refused with a message next to the field."""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox, QToolTip, QWidget


class _TypedNumber:
    """What NumberBox and DecimalBox share (a mixin of a Qt spin box)."""

    complaint: str = ""
    """The out-of-range message shown, until the user types again (empty when none)."""

    def _typed(self) -> None:
        self.setKeyboardTracking(False)
        self.lineEdit().textEdited.connect(self._forget_complaint)

    def _body(self, text: str) -> str:
        return text.removeprefix(self.prefix()).removesuffix(self.suffix()).strip()

    def _number(self, text: str) -> float | None:
        value, ok = self.locale().toDouble(self._body(text))
        return value if ok else None

    def validate(self, text: str, pos: int) -> object:
        """Qt's check, except that a number out of range may be typed (it is refused, and said so, at the end)."""
        state, text, pos = super().validate(text, pos)
        number = self._number(text)
        if state == QValidator.State.Invalid and number is not None and not self.minimum() <= number <= self.maximum():
            return QValidator.State.Intermediate, text, pos
        return state, text, pos

    def fixup(self, text: str) -> str:
        """Typing ended on text that is not a value: out of range, say so and keep the value the field had."""
        number = self._number(text)
        if number is not None and not self.minimum() <= number <= self.maximum():
            low, high, now = (self.textFromValue(v) for v in (self.minimum(), self.maximum(), self.value()))
            self.complaint = (f"{self._body(text)} is out of range: {self._what()} takes {low} to {high}{self.suffix()}. "
                              f"It stays {now}{self.suffix()}.")
            QToolTip.showText(self.mapToGlobal(QPoint(0, self.height())), self.complaint, self)
            return self.textFromValue(self.value())
        return super().fixup(text)

    def _what(self) -> str:
        return self.accessibleName() or "this field"

    def _forget_complaint(self, _text: str) -> None:
        self.complaint = ""


class NumberBox(_TypedNumber, QSpinBox):
    """A whole-number field that takes what is typed (see the module docstring); `what` names it in messages."""

    def __init__(self, what: str, parent: QWidget | None = None, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.setAccessibleName(what)
        self._typed()


class DecimalBox(_TypedNumber, QDoubleSpinBox):
    """A decimal-number field that takes what is typed (see the module docstring); `what` names it in messages."""

    def __init__(self, what: str, parent: QWidget | None = None, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.setAccessibleName(what)
        self._typed()
