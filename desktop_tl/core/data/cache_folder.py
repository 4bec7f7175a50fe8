"""The decode cache's folder: where the cache files live, how much they may take together, and its
housekeeping.

Housekeeping: all cache files together may take `budget_bytes()` (32 GiB by default, never less than
the per-file limit; `DESKTOP_TL_DECODE_CACHE_BUDGET_BYTES` overrides), each counted at its full size
although the sparse file only takes disk space as its entries fill. Opening a cache marks it used
(its mtime; the header is never rewritten). Creating one first removes the least recently used other
files until the budget and the free disk space allow the new file, and removes temporary files older
than a day left by creators that crashed. A file that cannot be removed (mapped by another process on
Windows) is skipped; on POSIX a process that still maps a removed file keeps reading it, and a process
that opens it later simply decodes its images again. `clear_cache` empties the folder.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from desktop_tl.core.paths import user_cache_dir

SUFFIX = ".u8cache"
DEFAULT_MAX_BYTES = 32 * 1024 ** 3   # one cache file at most; `DESKTOP_TL_DECODE_CACHE_MAX_BYTES` overrides
DEFAULT_BUDGET_BYTES = 32 * 1024 ** 3  # all cache files together; `DESKTOP_TL_DECODE_CACHE_BUDGET_BYTES` overrides
FREE_SPACE_MARGIN = 1024 ** 3        # leave at least this much free disk space
STALE_TMP_SECONDS = 24 * 3600        # a creator's temporary file this old belongs to a crashed process


def _env_bytes(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def max_file_bytes() -> int:
    """Bytes one cache file may take: `DESKTOP_TL_DECODE_CACHE_MAX_BYTES`, else `DEFAULT_MAX_BYTES`."""
    return _env_bytes("DESKTOP_TL_DECODE_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES)


def budget_bytes() -> int:
    """Bytes all cache files together may take: `DESKTOP_TL_DECODE_CACHE_BUDGET_BYTES`, else the larger of
    `DEFAULT_BUDGET_BYTES` and the per-file limit (so any cache the limit allows fits)."""
    return _env_bytes("DESKTOP_TL_DECODE_CACHE_BUDGET_BYTES", max(DEFAULT_BUDGET_BYTES, max_file_bytes()))


def decode_cache_dir() -> Path:
    """The folder of the cache files: `user_cache_dir()/decode`."""
    return user_cache_dir() / "decode"


@dataclass(frozen=True)
class CacheFile:
    """One cache file as found on disk."""

    path: Path
    size: int       # bytes once every entry is filled: what the budget counts
    on_disk: int    # bytes allocated now (the file is sparse and fills as images are decoded)
    used: float     # when a run last opened it (mtime, seconds since the epoch)


@dataclass(frozen=True)
class Cleared:
    """What `clear_cache` did."""

    removed: int        # cache files removed
    freed_bytes: int    # disk space they took
    kept: int           # files that could not be removed (in use by another program on Windows)


def list_cache_files(folder: Path | None = None) -> list[CacheFile]:
    """The cache files in `folder` (default `decode_cache_dir()`), least recently used first."""
    folder = Path(folder) if folder else decode_cache_dir()
    files = []
    try:
        paths = list(folder.glob(f"*{SUFFIX}"))
    except OSError:
        return []
    for path in paths:
        try:
            st = path.stat()
        except OSError:   # removed meanwhile
            continue
        blocks = getattr(st, "st_blocks", None)   # absent on Windows, where the files are not sparse
        files.append(CacheFile(path, st.st_size, st.st_size if blocks is None else blocks * 512, st.st_mtime))
    return sorted(files, key=lambda f: (f.used, f.path.name))


def _remove(path: Path) -> bool:
    """Unlink `path`; False when it is in use (Windows) or otherwise cannot be removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(folder: Path, max_age_s: float = STALE_TMP_SECONDS) -> list[Path]:
    """Remove creators' temporary files older than `max_age_s` (left by crashed processes); the paths removed."""
    removed = []
    cutoff = time.time() - max_age_s
    try:
        candidates = list(Path(folder).glob(f".*{SUFFIX}.*.tmp"))
    except OSError:
        return []
    for path in candidates:
        try:
            stale = path.stat().st_mtime < cutoff
        except OSError:
            continue
        if stale and _remove(path):
            removed.append(path)
    return removed


def make_room(folder: Path, incoming: int, keep: Path, budget: int | None = None) -> list[Path]:
    """Remove least recently used cache files until the others plus `incoming` bytes fit the budget
    and the disk keeps `FREE_SPACE_MARGIN` free once `incoming` is written; the paths removed.

    `keep` (the file being created) is never removed; a file that cannot be removed is skipped.
    """
    budget = budget_bytes() if budget is None else budget
    keep = Path(keep)
    others = [f for f in list_cache_files(folder) if f.path != keep]
    total = sum(f.size for f in others)
    free = shutil.disk_usage(folder).free
    removed = []
    for old in others:
        if total + incoming <= budget and free >= incoming + FREE_SPACE_MARGIN:
            break
        if _remove(old.path):
            removed.append(old.path)
            total -= old.size
            free += old.on_disk
    return removed


def clear_cache(folder: Path | None = None) -> Cleared:
    """Remove every cache file in `folder` (default `decode_cache_dir()`) and stale temporary files."""
    folder = Path(folder) if folder else decode_cache_dir()
    removed, freed, kept = 0, 0, 0
    for cache_file in list_cache_files(folder):
        if _remove(cache_file.path):
            removed, freed = removed + 1, freed + cache_file.on_disk
        else:
            kept += 1
    remove_stale_temporaries(folder)
    return Cleared(removed, freed, kept)
