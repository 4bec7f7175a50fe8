"""Decode cache housekeeping: total budget, least recently used first, current file kept, stale temporaries, clear."""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from desktop_tl.core.data import cache_folder, decode_cache
from desktop_tl.core.data.cache_folder import (
    budget_bytes,
    clear_cache,
    decode_cache_dir,
    list_cache_files,
    make_room,
    remove_stale_temporaries,
)
from desktop_tl.core.data.decode_cache import DecodeCache, cache_box
from desktop_tl.core.data.preprocess import Preprocessing

PREP = Preprocessing((64, 64), "bicubic", 0.875, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
BUDGET = "DESKTOP_TL_DECODE_CACHE_BUDGET_BYTES"


def _open(name: str, entries: int = 4) -> DecodeCache:
    """A cache of `entries` made-up images in the default folder (each name gives different contents)."""
    cache, why = DecodeCache.open([f"{name}-{i}" for i in range(entries)], PREP)
    assert cache is not None, why
    return cache


def _age(cache: DecodeCache, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(cache.path, (when, when))


def _names() -> list[str]:
    return [f.path.name for f in list_cache_files()]


def test_least_recently_used_go_first_and_the_budget_holds(monkeypatch):
    a, b, c = _open("a"), _open("b"), _open("c")
    size = a.size
    _age(a, 3000), _age(b, 2000), _age(c, 1000)
    assert _names() == [a.path.name, b.path.name, c.path.name]       # least recently used first
    assert _open("a").path == a.path                                  # opening marks `a` used again
    assert _names() == [b.path.name, c.path.name, a.path.name]

    monkeypatch.setenv(BUDGET, str(3 * size))
    d = _open("d")
    assert sorted(_names()) == sorted(p.name for p in (a.path, c.path, d.path))   # `b` went, not `a`
    _age(a, 20), _age(d, 10)
    monkeypatch.setenv(BUDGET, str(2 * size + size // 2))             # room for one other file: `d`, the newest
    e = _open("e")
    assert sorted(_names()) == sorted(p.name for p in (d.path, e.path))
    assert sum(f.size for f in list_cache_files()) <= budget_bytes()


def test_opening_an_existing_cache_removes_nothing_and_keeps_its_entries(monkeypatch):
    a, b = _open("a"), _open("b")
    a.put("a-0", np.full((*cache_box(PREP), 3), 7, np.uint8))
    assert a.commit(["a-0"]) == 1
    header = a.path.read_bytes()[:decode_cache.HEADER_BYTES]
    monkeypatch.setenv(BUDGET, str(a.size))                          # both no longer fit
    again = _open("a")
    assert sorted(_names()) == sorted([a.path.name, b.path.name])
    assert again.path.read_bytes()[:decode_cache.HEADER_BYTES] == header   # used time is the mtime only
    assert int(again.get("a-0")[0, 0, 0]) == 7


def test_the_file_being_created_is_never_removed():
    a, b = _open("a"), _open("b")
    _age(a, 5000)                                                     # `a` is the least recently used
    removed = make_room(decode_cache_dir(), a.size, keep=a.path, budget=a.size)
    assert removed == [b.path] and a.path.is_file()


def test_a_cache_larger_than_the_budget_is_switched_off(monkeypatch):
    small = _open("small", entries=1)
    monkeypatch.setenv(BUDGET, str(small.size + 1))
    cache, why = DecodeCache.open([f"big-{i}" for i in range(8)], PREP)
    assert cache is None and "limit" in why
    assert small.path.is_file()                                       # refusing evicts nothing


def test_files_that_cannot_be_removed_are_skipped(monkeypatch):
    a, b, c = _open("a"), _open("b"), _open("c")
    _age(a, 3000), _age(b, 2000), _age(c, 1000)
    real_unlink = Path.unlink

    def unlink(path: Path, missing_ok: bool = False) -> None:        # Windows: a mapped file cannot be deleted
        if path == a.path:
            raise PermissionError(13, "The process cannot access the file", str(path))
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert make_room(decode_cache_dir(), 0, keep=c.path, budget=a.size) == [b.path]
    assert a.path.is_file() and c.path.is_file()
    # when the budget cannot be met the new cache is refused, with the reason
    monkeypatch.setenv(BUDGET, str(a.size))
    cache, why = DecodeCache.open([f"d-{i}" for i in range(4)], PREP)
    assert cache is None and "budget" in why
    assert _names() == [a.path.name]                                  # `c` went trying
    cleared = clear_cache()
    assert (cleared.removed, cleared.kept) == (0, 1) and _names() == [a.path.name]


def test_stale_temporary_files_are_removed_fresh_ones_kept():
    folder = decode_cache_dir()
    folder.mkdir(parents=True)
    stale = folder / ".0123abcd.u8cache.deadbeef0001.tmp"
    fresh = folder / ".0123abcd.u8cache.deadbeef0002.tmp"
    other = folder / "notes.tmp"
    for path in (stale, fresh, other):
        path.write_bytes(b"x" * 100)
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (stale, other):
        os.utime(path, (two_days_ago, two_days_ago))
    _open("a")                                                        # creating a cache tidies up
    assert not stale.exists() and fresh.exists() and other.exists()
    os.utime(fresh, (two_days_ago, two_days_ago))
    assert remove_stale_temporaries(folder) == [fresh]


def test_clear_removes_every_cache_and_reports_sizes():
    a, _ = _open("a"), _open("b")
    a.put("a-0", np.ones((*cache_box(PREP), 3), np.uint8))
    a.commit(["a-0"])
    files = list_cache_files()
    assert {f.size for f in files} == {a.size} and all(0 < f.on_disk <= f.size + 65536 for f in files)
    cleared = clear_cache()
    assert (cleared.removed, cleared.kept) == (2, 0)
    assert cleared.freed_bytes == sum(f.on_disk for f in files)
    assert list_cache_files() == [] and clear_cache().removed == 0


def test_a_cache_removed_while_in_use_falls_back_to_decoding():
    cache = _open("a")
    entry = np.full((*cache_box(PREP), 3), 5, np.uint8)
    cache.put("a-0", entry)
    assert cache.commit(["a-0"]) == 1
    later = pickle.loads(pickle.dumps(cache))                         # as a loader worker gets it
    clear_cache()
    if sys.platform != "win32":                                       # a mapped file lives on until unmapped
        assert np.array_equal(cache.get("a-0"), entry)
    assert later.get("a-0") is None and not later.filled(["a-0"])
    later.put("a-1", entry)                                           # ignored, no error
    assert later.commit(["a-1"]) == 0


def test_default_budget_and_override(monkeypatch):
    monkeypatch.delenv(BUDGET, raising=False)
    monkeypatch.delenv("DESKTOP_TL_DECODE_CACHE_MAX_BYTES", raising=False)
    assert budget_bytes() == cache_folder.DEFAULT_BUDGET_BYTES == 32 * 1024 ** 3
    monkeypatch.setenv("DESKTOP_TL_DECODE_CACHE_MAX_BYTES", str(64 * 1024 ** 3))
    assert budget_bytes() == 64 * 1024 ** 3                           # any file the per-file limit allows fits
    monkeypatch.setenv(BUDGET, "1000")
    assert budget_bytes() == 1000
    monkeypatch.setenv(BUDGET, "lots")
    assert budget_bytes() == 64 * 1024 ** 3
