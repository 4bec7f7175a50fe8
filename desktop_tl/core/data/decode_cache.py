"""Decoded-image cache: every image is decoded and resized once per dataset and input geometry.

The cache is one memory-mapped file per (set of image contents, resize geometry) in
`user_cache_dir()/decode/`, reused by every epoch and every later run on the same images:

    [4096-byte header: magic + JSON]  [one "filled" byte per entry, padded]  [N x H x W x 3 uint8]

An entry is the image resized exactly as `preprocess.resize_center_crop` resizes it, cut to a
fixed box of `cache_box(prep)` pixels that contains the evaluation centre crop at a known offset.
Evaluation tensors made from an entry are therefore bit-identical to `preprocess.preprocess` on
the decoded file (the ONNX parity and `predict` depend on that); training augmentation works on
the entry (the centre `size / crop_pct` box of the image) instead of the full-resolution file.

Crash safety: rows are written by whichever process decodes them (DataLoader workers included),
but an entry only counts once its "filled" byte is set, and the owner of the cache (the training
process) sets those bytes only after `fsync` of the data (`commit`). A process killed half-way
leaves rows without their flag: they are decoded again next time, never read as valid. The file
itself is created complete (header and full size) under a temporary name and linked into place,
so a torn header is never seen; a file whose header does not match is rebuilt.

Housekeeping (the budget, least recently used first, clearing) is `cache_folder`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from desktop_tl.core.data.cache_folder import (
    FREE_SPACE_MARGIN,
    SUFFIX,
    budget_bytes,
    decode_cache_dir,
    list_cache_files,
    make_room,
    max_file_bytes,
    remove_stale_temporaries,
)
from desktop_tl.core.data.preprocess import Preprocessing, to_normalized_array

FORMAT = 1
MAGIC = b"DTLDCACHE1\n"
HEADER_BYTES = 4096
PAGE = 4096


def cache_box(prep: Preprocessing) -> tuple[int, int]:
    """(height, width) of a cached entry: the resized shorter side, `round(size / crop_pct)`."""
    height, width = prep.input_size
    return max(height, round(height / prep.crop_pct)), max(width, round(width / prep.crop_pct))


def decode_entry(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """The cache entry of a decoded RGB image: HxWx3 uint8 of `cache_box(prep)`.

    The resize is the one of `preprocess.resize_center_crop`; the box is placed so that its own
    centre crop is exactly the evaluation crop (`eval_array`).
    """
    height, width = prep.input_size
    box_h, box_w = cache_box(prep)
    scale_h, scale_w = round(height / prep.crop_pct), round(width / prep.crop_pct)
    w, h = image.size
    factor = max(scale_w / w, scale_h / h)
    new_w, new_h = max(width, round(w * factor)), max(height, round(h * factor))
    image = image.resize((new_w, new_h), prep.resample)
    # Evaluation crops at ((new - size) // 2); the box's own centre crop starts (box - size) // 2 in.
    left = (new_w - width) // 2 - (box_w - width) // 2
    top = (new_h - height) // 2 - (box_h - height) // 2
    entry = np.asarray(image.crop((left, top, left + box_w, top + box_h)).convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(entry)


def eval_array(entry: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Evaluation preprocessing of a cache entry: equal to `preprocess.preprocess` of the image."""
    height, width = prep.input_size
    top, left = (entry.shape[0] - height) // 2, (entry.shape[1] - width) // 2
    return to_normalized_array(Image.fromarray(entry[top:top + height, left:left + width]), prep)


def cache_key(shas: Iterable[str], prep: Preprocessing) -> str:
    """Content key of a cache file: the image contents and everything that shapes an entry."""
    import PIL

    digest = hashlib.sha256()
    geometry = {"format": FORMAT, "input_size": list(prep.input_size), "crop_pct": prep.crop_pct,
                "interpolation": prep.interpolation, "box": list(cache_box(prep)), "pillow": PIL.__version__}
    digest.update(json.dumps(geometry, sort_keys=True).encode())
    for sha in sorted(set(shas)):
        digest.update(sha.encode())
    return digest.hexdigest()


class DecodeCache:
    """One cache file; picklable (maps are opened lazily in each process, e.g. each worker)."""

    def __init__(self, path: Path, shas: Sequence[str], box: tuple[int, int]) -> None:
        self.path = Path(path)
        self.shas = sorted(set(shas))
        self.rows = {sha: i for i, sha in enumerate(self.shas)}
        self.box = (int(box[0]), int(box[1]))
        self.entry_bytes = self.box[0] * self.box[1] * 3
        self.flags_offset = HEADER_BYTES
        self.data_offset = HEADER_BYTES + -(-len(self.shas) // PAGE) * PAGE
        self.size = self.data_offset + len(self.shas) * self.entry_bytes
        self._maps: tuple[int, tuple[np.memmap, np.memmap, bool] | None] | None = None  # (pid, maps)

    # -- creation and opening ------------------------------------------------------------------
    @classmethod
    def open(cls, shas: Sequence[str], prep: Preprocessing, folder: Path | None = None
             ) -> tuple[DecodeCache | None, str]:
        """The cache for these images and geometry, created if needed; (None, why) when it cannot be.

        Never raises for cache trouble: the caller then simply decodes every time.
        """
        folder = Path(folder) if folder else decode_cache_dir()
        key = cache_key(shas, prep)
        cache = cls(folder / f"{key[:40]}{SUFFIX}", shas, cache_box(prep))
        header = cache._header(key)
        try:
            if cache.path.is_file() and cache._header_matches(header):
                cache._mark_used()
                return cache, ""
            budget = budget_bytes()
            limit = min(max_file_bytes(), budget)
            if cache.size > limit:
                return None, f"it would take {cache.size / 1e9:.1f} GB (limit {limit / 1e9:.1f} GB)"
            folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(folder)
            make_room(folder, cache.size, keep=cache.path, budget=budget)
            others = sum(f.size for f in list_cache_files(folder) if f.path != cache.path)
            if others + cache.size > budget:
                return None, (f"other caches in use in {folder} take {others / 1e9:.1f} GB of its "
                              f"{budget / 1e9:.1f} GB budget")
            free = shutil.disk_usage(folder).free
            if free < cache.size + FREE_SPACE_MARGIN:
                return None, f"only {free / 1e9:.1f} GB free in {folder}"
            cache._create(header)
            if cache._header_matches(header):
                return cache, ""
            return None, "the cache file could not be verified"
        except OSError as exc:
            return None, f"{exc.strerror or exc}"

    def _mark_used(self) -> None:
        """Refresh the file's mtime, the "last used" time of eviction (a read-only folder keeps the old one)."""
        try:
            os.utime(self.path)
        except OSError:
            pass

    def _header(self, key: str) -> bytes:
        meta = {"format": FORMAT, "key": key, "entries": len(self.shas), "box": list(self.box),
                "data_offset": self.data_offset, "size": self.size}
        payload = MAGIC + json.dumps(meta, sort_keys=True).encode() + b"\n"
        return payload.ljust(HEADER_BYTES, b"\0")

    def _header_matches(self, header: bytes) -> bool:
        try:
            if self.path.stat().st_size != self.size:
                return False
            with open(self.path, "rb") as fh:
                return fh.read(HEADER_BYTES) == header
        except OSError:
            return False

    def _create(self, header: bytes) -> None:
        """Write a complete empty cache under a temporary name, then link it into place."""
        if self.path.exists():  # stale or foreign: rebuild (readers of the old inode keep it)
            self.path.unlink(missing_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(header)
                fh.truncate(self.size)   # sparse: disk space is used as entries fill
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, self.path)   # no-replace: a concurrent creator's file wins
            except FileExistsError:
                pass
            except OSError:               # file systems without hard links
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    # -- access ----------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = None
        return state

    def _map(self, mode: str) -> tuple[np.memmap, np.memmap]:
        flags = np.memmap(self.path, np.uint8, mode, self.flags_offset, (len(self.shas),))
        data = np.memmap(self.path, np.uint8, mode, self.data_offset, (len(self.shas), *self.box, 3))
        return flags, data

    def _open_maps(self) -> tuple[np.memmap, np.memmap, bool] | None:
        """(flags, data, writable) of this process; None when the file is gone (evicted or cleared)."""
        pid = os.getpid()
        if self._maps is None or self._maps[0] != pid:
            maps: tuple[np.memmap, np.memmap, bool] | None
            try:
                maps = (*self._map("r+"), True)
            except OSError:
                try:   # a read-only cache folder: read what is there, write nothing
                    maps = (*self._map("r"), False)
                except OSError:   # removed since `open`: this process decodes as without a cache
                    maps = None
            self._maps = (pid, maps)
        return self._maps[1]

    def get(self, sha: str) -> np.ndarray | None:
        """A copy of the entry of image `sha`, or None when it is not (yet) committed."""
        row = self.rows.get(sha)
        maps = self._open_maps() if row is not None else None
        if maps is None:
            return None
        flags, data, _ = maps
        return np.array(data[row]) if flags[row] == 1 else None

    def put(self, sha: str, entry: np.ndarray) -> None:
        """Write an entry (not yet valid: `commit` makes it so)."""
        row = self.rows.get(sha)
        if row is None or entry.shape != (*self.box, 3):
            return
        maps = self._open_maps()
        if maps is None:
            return
        _, data, writable = maps
        if writable:
            data[row] = entry

    def filled(self, shas: Iterable[str]) -> bool:
        """True when every image of `shas` has a committed entry."""
        maps = self._open_maps()
        if maps is None:
            return False
        flags = maps[0]
        return all(flags[self.rows[s]] == 1 for s in shas if s in self.rows)

    def commit(self, shas: Iterable[str]) -> int:
        """Mark entries written by `put` (in any process) as valid: data is fsynced first.

        Returns how many entries became valid. Call it only for images whose `put` finished.
        """
        maps = self._open_maps()
        if maps is None:
            return 0
        flags, data, writable = maps
        rows = sorted({self.rows[s] for s in shas if s in self.rows and flags[self.rows[s]] != 1})
        if not rows or not writable:
            return 0
        try:
            data.flush()
            with open(self.path, "rb+") as fh:   # the page cache is shared: this covers workers' writes
                os.fsync(fh.fileno())
            flags[rows] = 1
            flags.flush()
            with open(self.path, "rb+") as fh:
                os.fsync(fh.fileno())
        except OSError:
            return 0
        return len(rows)

    def close(self) -> None:
        """Drop this process's maps."""
        self._maps = None
