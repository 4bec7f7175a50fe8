"""Stop and pause requests to a long-running engine task from another thread (a Stop button, Ctrl+C)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class RunControl:
    """Stop and pause requests from another thread; the loop checks them every batch."""

    stop_event: threading.Event = field(default_factory=threading.Event)
    pause_event: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Ask the loop to stop at the next batch (the last saved epoch is kept)."""
        self.stop_event.set()

    def pause(self, paused: bool) -> None:
        """Pause or resume the loop between batches."""
        self.pause_event.set() if paused else self.pause_event.clear()

    @property
    def stop_requested(self) -> bool:
        """True once `stop` was called."""
        return self.stop_event.is_set()

    def wait_while_paused(self) -> None:
        """Block while paused, returning early on stop."""
        while self.pause_event.is_set() and not self.stop_event.is_set():
            time.sleep(0.05)
