"""Errors meant for the person using the app, not for a developer."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: says what is wrong, where, and what to do.

    The CLI prints it without a traceback and exits with status 2; the window shows it
    in a message box.
    """

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.what}\n  What to do: {self.hint}" if self.hint else self.what


class SettingError(UserError):
    """A setting that cannot work; `setting` is its field name in core.config, so that a face can point at
    its own control for it (the CLI names the option, e.g. --image-size)."""

    def __init__(self, setting: str, what: str, hint: str = "") -> None:
        super().__init__(what, hint)
        self.setting = setting


class Cancelled(Exception):
    """Raised inside long operations when the user asked to stop."""
