"""A tamper-evident, crash-safe log of JSON lines: the silent trial's record of every image a model saw.

Each entry is one line of compact JSON with sorted keys. It carries `seq` (0, 1, 2, ...), `prev` (the hash of
the entry before it; 64 zeros for the first) and `hash`, the SHA-256 of the entry's own canonical JSON without
`hash`. Editing an entry breaks its hash; removing or reordering entries breaks the next entry's `prev` and the
sequence. (Cutting entries off the end leaves a valid shorter chain: keep a copy of the last hash, or of the
log, somewhere the writer cannot change, when that matters.)

Writing: each entry is one `os.write` of its whole line to a file opened for appending, and `flush` fsyncs.
After a crash (kill -9, power loss) the file ends with whole entries, possibly followed by one torn line.
`AuditLog.open` finds such a line, cuts it off and appends a `repair` entry that records its length and
SHA-256: it is never dropped silently. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from desktop_tl.core.errors import UserError

GENESIS = "0" * 64


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the millisecond with a Z (what entries carry)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry's canonical JSON (sorted keys, compact), `hash` left out."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def _canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Verification:
    """What `verify_log` found: `ok`, the entries it read, and for a broken chain the first bad line (1-based)
    and why."""

    ok: bool
    entries: int
    bad_line: int | None = None
    reason: str = ""

    def sentence(self, name: str) -> str:
        """The verdict in words."""
        if self.ok:
            return f"{name}: the hash chain of its {self.entries} entries is intact."
        return f"{name}: line {self.bad_line} breaks the hash chain ({self.reason})."


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return entry if isinstance(entry, dict) else None


def verify_log(path: Path) -> Verification:
    """Check every line of the log at `path`: it parses, its hash matches its content, its `prev` is the hash of
    the line before and its `seq` follows on. The first failure names its line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"Cannot read {path.name}: {exc.strerror or exc}.", "Check the log's path.") from exc
    prev, count = GENESIS, 0
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()                                          # what follows the last newline
    for number, line in enumerate(lines, start=1):
        entry = _parse(line)
        if entry is None:
            return Verification(False, count, number, "not a JSON entry: edited, or torn by a crash")
        if entry.get("hash") != entry_hash(entry):
            return Verification(False, count, number, "its content does not match its hash: edited")
        if entry.get("prev") != prev:
            return Verification(False, count, number,
                                "it does not follow the entry before it: an entry was removed, added or moved")
        if entry.get("seq") != count:
            return Verification(False, count, number, f"sequence number {entry.get('seq')} where {count} belongs")
        prev, count = entry["hash"], count + 1
    return Verification(True, count)


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The whole entries of the log (a torn last line is left out), without checking the chain."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UserError(f"Cannot read {Path(path).name}: {exc.strerror or exc}.", "Check the log's path.") from exc
    return [e for e in (_parse(line) for line in data.split(b"\n") if line) if e is not None]


def _unwritable(path: Path, exc: OSError) -> UserError:
    return UserError(f"Cannot write the log {path.name}: {exc.strerror or exc}.",
                     "Free some disk space or choose another log file; a restart with the same log goes on where "
                     "it stopped (the entries written so far are whole).")


class AuditLog:
    """An open log, appended to by one process. Use `AuditLog.open(path)`; `append` then `flush`."""

    def __init__(self, path: Path, fd: int, found: list[dict[str, Any]]) -> None:
        self.path = path
        self._fd = fd
        self.found = found                                  # the whole entries the file held when opened
        self._last_hash = found[-1]["hash"] if found else GENESIS
        self._next_seq = len(found)
        self.repaired: dict[str, Any] | None = None      # the repair entry written on opening, if any

    @classmethod
    def open(cls, path: Path) -> AuditLog:
        """Open (or create) the log for appending: a torn last line is cut off and recorded in a `repair`
        entry; an entry before it that does not parse means the file is not a log this class wrote, refused."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = path.read_bytes() if path.exists() else b""
        except OSError as exc:
            raise _unwritable(path, exc) from exc
        whole_end = data.rfind(b"\n") + 1             # bytes up to the last newline: whole lines
        torn = data[whole_end:]
        entries = [_parse(line) for line in data[:whole_end].split(b"\n") if line]
        if any(e is None or not isinstance(e.get("hash"), str) for e in entries):
            raise UserError(f"{path.name} is not a desktop_tl watch log (a line is not one of its hash-chained entries).",
                            "Give a new file for --log, or the log this watch wrote.")
        if torn:
            last = _parse(torn)
            if last is not None and last.get("hash") == entry_hash(last):
                whole_end, torn = len(data), b""          # a whole entry that only lost its newline
                entries.append(last)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise _unwritable(path, exc) from exc
        try:
            if torn:
                os.ftruncate(fd, whole_end)
            elif whole_end and not data.endswith(b"\n"):
                os.write(fd, b"\n")
        except OSError:
            os.close(fd)
            raise
        log = cls(path, fd, entries)
        if torn:
            log.repaired = log.append({"kind": "repair", "time": utc_now(), "torn_bytes": len(torn),
                                       "torn_sha256": hashlib.sha256(torn).hexdigest(),
                                       "note": "the last line was torn (the writer stopped mid-entry) and was cut "
                                               "off; its length and SHA-256 are kept here"})
            log.flush()
        return log

    def append(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Write one entry (the fields plus seq, prev and hash) as one whole line; `flush` makes it durable."""
        entry = dict(fields, seq=self._next_seq, prev=self._last_hash)
        entry["hash"] = entry_hash(entry)
        try:
            os.write(self._fd, (_canonical(entry) + "\n").encode("utf-8"))
        except OSError as exc:       # a full disk: the entries before this one are whole
            raise _unwritable(self.path, exc) from exc
        self._last_hash, self._next_seq = entry["hash"], self._next_seq + 1
        return entry

    def flush(self) -> None:
        """fsync: the entries appended so far survive a crash or power loss."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise _unwritable(self.path, exc) from exc

    def close(self) -> None:
        """fsync and close."""
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

