"""`desktop-tl cache info|clear`: the decoded-image cache's files and sizes in human units, and emptying it."""

from __future__ import annotations

import pytest

from desktop_tl.cli import main
from desktop_tl.core.data.cache_folder import decode_cache_dir, list_cache_files
from desktop_tl.core.data.decode_cache import DecodeCache
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.reporting import binary_size as human_size

PREP = Preprocessing((64, 64), "bicubic", 0.875, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("size, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                        (5 * 1024 ** 2, "5.0 MiB"), (32 * 1024 ** 3, "32.0 GiB")])
def test_human_size(size, text):
    assert human_size(size) == text


def test_cache_info_then_clear(capsys, monkeypatch):
    monkeypatch.setenv("DESKTOP_TL_DECODE_CACHE_BUDGET_BYTES", str(20 * 1024 ** 3))
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(decode_cache_dir()) in out and "Empty" in out and "budget 20.0 GiB" in out

    caches = [DecodeCache.open([f"{name}-{i}" for i in range(4)], PREP)[0] for name in ("a", "b")]
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"2 files, {human_size(2 * caches[0].size)} when full" in out
    assert all(cache.path.name in out for cache in caches)

    on_disk = sum(f.on_disk for f in list_cache_files())
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.strip() == (f"Removed 2 cache files from {decode_cache_dir()}, "
                                               f"freeing {human_size(on_disk)}.")
    assert list_cache_files() == []


def test_unknown_cache_action_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["cache", "purge"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
