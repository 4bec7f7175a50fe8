"""A silent trial's watcher: classify every image in a folder, and every image that arrives later, into a
tamper-evident log (the engine of `desktop-tl watch`; onnxruntime only, no torch).

- Inputs are never moved, renamed or changed: the watcher only reads them.
- A file is read once it has settled: its size and modification time unchanged for `settle_s` seconds, so a
  scan still being copied in is not read half-written.
- File events come from watchdog (inotify, FSEvents, ReadDirectoryChangesW) and wake the loop at once; a rescan
  of the folder every `RESCAN_S` seconds catches what events miss (network shares). Without watchdog, or when
  it cannot watch the folder, the folder is rescanned every `POLL_S` seconds instead.
- Each image gives one entry of `core.audit_log`: the path relative to the folder, the input's and the model's
  SHA-256, the time, the label, the probabilities and the status (answered, uncertain, unfamiliar). A file that
  cannot be read gives a `skipped` entry with the reason.
- Exactly once across crashes: entries are appended whole and fsynced after each batch; on a restart every
  (path, content) the log already holds is left out, so an image is neither lost nor logged twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_tl.core.audit_log import AuditLog, utc_now
from desktop_tl.core.deploy.predict import OnnxClassifier, describe_decision, image_files, is_input_file
from desktop_tl.core.deploy.promise import PROMISE_KEY
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import TrialLogged
from desktop_tl.core.hashing import file_sha256
from desktop_tl.core.label_rules import not_for_multi_label
from desktop_tl.core.reporting import counted

SETTLE_S = 2.0        # unchanged this long: the file is complete
RESCAN_S = 30.0       # with file events: a full rescan this often, for what the events miss
POLL_S = 1.0          # without file events: a rescan this often
BATCH = 16            # images classified in one run of the model
HEATMAP_SIDE = 240    # heat maps handed to a listener are kept this small


@dataclass
class WatchCounts:
    """What one watch session did."""

    logged: int = 0       # images classified and logged
    skipped: int = 0      # files that could not be read (logged with the reason)
    known: int = 0        # files the log already held when the session started

    def sentence(self) -> str:
        """The session in words."""
        return (f"{counted(self.logged, 'image')} logged, {counted(self.skipped, 'unreadable file')} logged as "
                f"skipped, {self.known} already in the log.")


class _Settling:
    """Files waiting to settle: ready once their (size, mtime) held for `settle_s` seconds."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._first_seen: dict[Path, tuple[tuple[int, int], float]] = {}

    def offer(self, path: Path, now: float) -> bool:
        """Note the file's size and time; True when they have not changed for the settle time."""
        try:
            stat = path.stat()
        except OSError:
            self._first_seen.pop(path, None)        # gone again (a temporary file, say)
            return False
        signature = (stat.st_size, stat.st_mtime_ns)
        seen = self._first_seen.get(path)
        if seen is None or seen[0] != signature:
            self._first_seen[path] = (signature, now)
            return False
        if stat.st_size == 0 or now - seen[1] < self.settle_s:
            return False
        del self._first_seen[path]
        return True

    def waiting(self) -> list[Path]:
        """Files seen but not settled yet."""
        return list(self._first_seen)


class _Events:
    """watchdog's file events, as a set of paths and a wake-up; `active` False when watchdog cannot watch."""

    def __init__(self, folder: Path) -> None:
        self.paths: set[Path] = set()
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._observer = None
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return
        events = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.is_directory:
                    events.wake.set()           # a folder copied in: the rescan below finds its files
                    return
                for name in (getattr(event, "dest_path", "") or "", event.src_path):
                    if name:
                        events.add(Path(os.fsdecode(name)))

        try:
            observer = Observer()
            observer.schedule(Handler(), str(folder), recursive=True)
            observer.start()
        except OSError:       # inotify watches exhausted, a file system without events: poll instead
            return
        self._observer = observer

    @property
    def active(self) -> bool:
        """True while file events arrive."""
        return self._observer is not None

    def add(self, path: Path) -> None:
        """A path an event named."""
        with self._lock:
            self.paths.add(path)
        self.wake.set()

    def take(self) -> set[Path]:
        """The paths named since the last call."""
        with self._lock:
            taken, self.paths = self.paths, set()
        self.wake.clear()
        return taken

    def stop(self) -> None:
        """Stop watching."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


class FolderWatch:
    """One watch of `folder` with the model at `model`, logging to `log_path` (see the module docstring)."""

    def __init__(self, model: Path, folder: Path, log_path: Path, settle_s: float = SETTLE_S,
                 threads: int | None = None) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise UserError(f"{folder} is not a folder.", "Give the folder new images arrive in.")
        self.model_path = Path(model)
        self.classifier = OnnxClassifier(self.model_path, threads)
        if self.classifier.multi_label:
            raise not_for_multi_label("A silent trial (watch)")
        self.model_sha256 = file_sha256(self.model_path)
        self.log_path = Path(log_path).resolve()
        self.log = AuditLog.open(self.log_path)
        self.settling = _Settling(settle_s)
        self.counts = WatchCounts()
        self.earlier = [e for e in self.log.found                   # the cases of earlier sessions
                        if e.get("kind") in ("image", "skipped") and isinstance(e.get("path"), str)]
        self._logged: dict[str, set[str]] = {}        # relative path -> contents already logged
        for entry in self.earlier:
            self._logged.setdefault(entry["path"], set()).add(str(entry.get("input_sha256")))
        self._settled: dict[Path, tuple[int, int]] = {}   # files handled this session -> their (size, mtime)
        self.heatmaps = False

    def relative(self, path: Path) -> str:
        """The path as the log names it: relative to the folder, with forward slashes."""
        return path.relative_to(self.folder).as_posix()

    def run(self, should_stop: Callable[[], bool], once: bool = False,
            on_entry: Callable[[TrialLogged], None] | None = None, heatmaps: bool = False) -> WatchCounts:
        """Watch until `should_stop()` (checked at least twice a second); with `once`, stop when every image
        already in the folder is logged. `on_entry` hears of each entry as it is logged, with its heat map when
        `heatmaps` (and the model has them). Returns what this session did."""
        self.heatmaps = heatmaps and self.classifier.has_heatmaps
        start = self._start_entry()
        if on_entry is not None:
            on_entry(TrialLogged(start))
        events = None if once else _Events(self.folder)
        try:
            self._loop(should_stop, once, events, on_entry)
        finally:
            if events is not None:
                events.stop()
            self.log.append({"kind": "stop", "time": utc_now(), "logged": self.counts.logged,
                             "skipped": self.counts.skipped})
            self.log.close()
        return self.counts

    def _start_entry(self) -> dict[str, Any]:
        c = self.classifier
        entry = {"kind": "start", "time": utc_now(), "model": self.model_path.name,
                 "model_sha256": self.model_sha256, "folder": self.folder.name, "classes": c.classes,
                 "rules": describe_decision(c.decision, c.calibration, c.referral, c.familiarity,
                                            c.has_status_rule)}
        for key in ("decision", "familiarity", PROMISE_KEY):        # JSON in the metadata
            try:
                entry[key] = json.loads(c.metadata[key])
            except (KeyError, ValueError):
                pass
        written = self.log.append(entry)
        self.log.flush()
        return written

    def _loop(self, should_stop, once, events: _Events | None, on_entry) -> None:
        rescan_every = RESCAN_S if events is not None and events.active else POLL_S
        next_rescan = 0.0
        while not should_stop():
            now = time.monotonic()
            offered = set(self.settling.waiting())
            if now >= next_rescan:
                offered.update(image_files(self.folder, self.log_path))
                next_rescan = now + rescan_every
            if events is not None:
                offered.update(p for p in events.take() if self._is_candidate(p))
            ready = [p for p in sorted(offered) if self._is_new(p) and self.settling.offer(p, now)]
            for start in range(0, len(ready), BATCH):
                self._classify(ready[start:start + BATCH], on_entry)
                if should_stop():
                    return
            if once and not ready and not self.settling.waiting():
                return
            wait = 0.1 if self.settling.waiting() else min(0.5, max(0.0, next_rescan - time.monotonic()))
            if events is not None:
                events.wake.wait(wait)
            else:
                time.sleep(wait)

    def _is_candidate(self, path: Path) -> bool:
        try:
            inside = path.resolve().is_relative_to(self.folder)
        except OSError:
            return False
        name = path.name
        return (inside and path != self.log_path and not name.startswith(".") and path.is_file()
                and not any(part.startswith(".") for part in path.relative_to(self.folder).parts)
                and is_input_file(path))

    def _is_new(self, path: Path) -> bool:
        """False for a file this session already handled, unchanged since."""
        try:
            stat = path.stat()
        except OSError:
            return False
        return self._settled.get(path) != (stat.st_size, stat.st_mtime_ns)

    def _classify(self, paths: list[Path], on_entry) -> None:
        todo: list[tuple[Path, str, str]] = []
        for path in paths:
            try:
                stat = path.stat()
                sha = file_sha256(path)
            except OSError:
                continue                                   # gone before it could be read: nothing to log
            self._settled[path] = (stat.st_size, stat.st_mtime_ns)
            shown = self.relative(path)
            if sha in self._logged.get(shown, ()):
                self.counts.known += 1
                continue
            todo.append((path, shown, sha))
        if not todo:
            return
        predictions = self.classifier.predict_files([(path, shown) for path, shown, _ in todo], batch_size=BATCH,
                                                    heatmaps=self.heatmaps)
        for (_path, shown, sha), p in zip(todo, predictions, strict=True):
            if p.error:
                entry = {"kind": "skipped", "time": utc_now(), "path": shown, "input_sha256": sha,
                         "reason": p.error.replace(str(self.folder), ".")}
                self.counts.skipped += 1
            else:
                entry = {"kind": "image", "time": utc_now(), "path": shown, "input_sha256": sha,
                         "model_sha256": self.model_sha256, "label": p.label, "probability": round(p.probability, 6),
                         "probabilities": {c: round(v, 6) for c, v in p.probabilities.items()},
                         "status": p.status}
                if p.unfamiliarity is not None:
                    entry["unfamiliarity"] = round(p.unfamiliarity, 6)
                self.counts.logged += 1
            written = self.log.append(entry)
            self._logged.setdefault(shown, set()).add(sha)
            if on_entry is not None:
                if p.heatmap is not None:
                    p.heatmap.thumbnail((HEATMAP_SIDE, HEATMAP_SIDE))
                on_entry(TrialLogged(written, p.heatmap))
        self.log.flush()
