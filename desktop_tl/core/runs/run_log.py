"""The run's log (`log.txt` in the run folder): the sentences the CLI printed and the window's Training panel
showed, one timestamped entry per event, appended as the run goes and across resumes, so a reopened run shows
the log its user saw.

Entries are the engine's own words (`core.reporting.describe`; not the per-batch progress). Each is appended
with one write and flushed to disk, so a crash loses at most the entry being written, and reading tolerates a
torn last line. Absolute paths are cut to the part below the run's or the dataset's parent folder (or to
their last part), so the file names no folder above the dataset, as every output of a run must not.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Generator, Iterator
from contextlib import closing
from pathlib import Path

from desktop_tl.core.events import BatchProgress, RunStarted, TrainEvent
from desktop_tl.core.reporting import describe
from desktop_tl.core.runs.folder import RunFolder

LOG_FILE = "log.txt"
MAX_READ_BYTES = 1_000_000
"""Reading a log keeps its last megabyte (a run writes a few hundred bytes per epoch)."""
_STAMP_WIDTH = len("2000-01-01 00:00:00  ")
_ABSOLUTE = re.compile(r"(?<![\w.~/\\])(?:/|[A-Za-z]:[\\/])[^\s'\"]+")


def _last_part(match: re.Match[str]) -> str:
    """An absolute path no known folder contains, cut to its last part."""
    return match.group(0).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or "/"


class RunLog:
    """Appends entries to one run folder's log. Best effort: the log is a record, and a disk that cannot take
    one line is reported by the checkpoint save that fails next, so a failed write is never raised."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOG_FILE
        self._replacements: list[tuple[str, str]] | None = None

    def _known_folders(self) -> list[tuple[str, str]]:
        """(folder as text, what it becomes): the parents of the run folder and of its dataset become nothing
        (paths below them read relative), the home folder ~; longest first."""
        if self._replacements is None:
            source = RunFolder(self.run_dir).dataset_source()
            parents = [self.run_dir.resolve().parent] + ([source.parent] if source is not None else [])
            pairs = {(form.rstrip("/\\") + sep, "") for folder in parents if len(folder.parts) > 1
                     for form in (str(folder), folder.as_posix()) for sep in ("/", "\\")}
            home = Path.home()
            if len(home.parts) > 1:
                pairs |= {(str(home), "~"), (home.as_posix(), "~")}
            self._replacements = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)
        return self._replacements

    def clean(self, text: str) -> str:
        """`text` without absolute paths: below a known folder relative to it, the home folder as ~, others
        cut to their last part."""
        if not _ABSOLUTE.search(text):
            return text
        for folder, replacement in self._known_folders():
            text = text.replace(folder, replacement)
        return _ABSOLUTE.sub(_last_part, text)

    def write(self, text: str) -> bool:
        """Append one entry (continuation lines indented under the first); False when it could not be written."""
        lines = self.clean(text).replace("\r", "").replace("\0", "").split("\n")
        entry = (f"{time.strftime('%Y-%m-%d %H:%M:%S')}  " + ("\n" + " " * _STAMP_WIDTH).join(lines) + "\n")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return False
        try:
            os.write(fd, entry.encode("utf-8"))
            os.fsync(fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True


def read_log(run_dir: Path, max_lines: int = 5000) -> list[str]:
    """The last `max_lines` lines of a run's log ([] when it has none or it cannot be read)."""
    path = Path(run_dir) / LOG_FILE
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - MAX_READ_BYTES))
            data = fh.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").replace("\0", "").splitlines()
    if size > MAX_READ_BYTES:
        lines = lines[1:]           # the first line read is cut
    return [line for line in lines if line.strip()][-max_lines:]


def logged(run_dir: Path, events: Generator[TrainEvent, None, None]) -> Iterator[TrainEvent]:
    """`events` (of `train_run`) passed on, each one people read also appended to the run's log once the run
    has started: a refusal before that (no run in the folder, a damaged run file or checkpoint) writes
    nothing into the folder."""
    log, started = RunLog(run_dir), False
    with closing(events):
        for event in events:
            started = started or isinstance(event, RunStarted)
            text = None if isinstance(event, BatchProgress) else describe(event)
            if started and text:
                log.write(text)
            yield event
