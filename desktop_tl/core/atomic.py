"""Crash-safe file writes: temp file in the same folder, flush, fsync, os.replace."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from desktop_tl.core.errors import UserError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` atomically; `write` fills a temporary path in the same folder.

    Either the old file or the complete new one exists afterwards, never a torn one.
    Raises UserError when the folder is read-only or the disk is full.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(
            f"Cannot save {path.name}: cannot write to {path.parent}: {exc.strerror or exc}",
            "Choose a folder you can write to, or free some disk space.",
        ) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"Could not save {path.name} in {path.parent}: {exc.strerror or exc}",
            "Check that the disk is not full and the folder is writable, then try again.",
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_writable(folder: Path, name: str) -> None:
    """UserError now, rather than after minutes of work, when `name` could not be saved in `folder`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"Cannot save {name}: cannot write to {folder}: {exc.strerror or exc}",
                        "Choose a folder you can write to, or free some disk space.") from exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically replace `path` with UTF-8 `text`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows (the header first) as CSV text with Unix line ends."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def atomic_write_csv(path: Path, rows: Iterable[Sequence[Any]]) -> None:
    """Write rows (the header first) as a CSV file atomically."""
    atomic_write_text(path, csv_text(rows))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically replace `path` with `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
