"""The Training panel's progress line: one bar whose text says where the run stands (preparing and what, the
epoch and batch with speed and time left, the refit on train+val, paused, stopping, how it ended)."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar, QWidget

from desktop_tl.core.events import BatchProgress
from desktop_tl.core.reporting import duration

PAUSED = "Paused — "


SIDE_PHASES = {"refit": "Training again on train+val, epoch", "member": "Another fine-tuned network, epoch"}

class RunProgress(QProgressBar):
    """The progress bar of a run (0-1000 over the run's batches) with its words."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, minimum=0, maximum=1000, value=0)
        self.setTextVisible(True)
        self.setFormat("Idle")

    def idle(self) -> None:
        """Nothing runs and nothing is shown."""
        self.setValue(0)
        self.setFormat("Idle")

    def preparing(self) -> None:
        """A run was started; its first batch has not come yet."""
        self.setValue(0)
        self.setFormat("Preparing…")

    def note(self, text: str) -> None:
        """While preparing, say what is being prepared (the engine's message)."""
        if self.format().startswith("Preparing"):
            self.setFormat(f"Preparing… {text[:90]}")

    def batch(self, event: BatchProgress, paused: bool) -> None:
        """A batch of the run (or of its refit, or of a further fine-tuned network) finished."""
        done = (event.epoch - 1) * event.batches + event.batch
        self.setValue(round(1000 * done / (event.epochs * event.batches)))
        what = "linear probe: features" if event.phase == "features" else f"batch {event.batch}/{event.batches}"
        epoch = SIDE_PHASES.get(event.phase, "Epoch")
        text = (f"{epoch} {event.epoch}/{event.epochs} · {what} · {event.images_per_sec:.1f} img/s · "
                f"ETA about {duration(event.eta_seconds)}")
        self.setFormat((PAUSED if paused else "") + text)

    def set_paused(self, paused: bool) -> None:
        """Pause or continue: the words say so at once, not at the next batch."""
        text = self.format().removeprefix(PAUSED)
        self.setFormat(PAUSED + text if paused else text)

    def stopping(self) -> None:
        """Stop was asked for."""
        self.setFormat("Stopping after the current batch…")

    def ended(self, label: str) -> None:
        """The run ended: "Finished" (the bar full), "Stopped" or "Failed"."""
        if label == "Finished":
            self.setValue(self.maximum())
        self.setFormat(label)
