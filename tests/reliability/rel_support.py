"""Builders of hostile inputs shared by the reliability tests (importable as `rel_support`)."""

from __future__ import annotations

import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo" / "images"
# Small, fast settings for every CLI training call in this suite.
FAST = ["--epochs", "1", "--batch-size", "8", "--image-size", "32", "--workers", "0", "--augment", "none"]


def demo_image(cls: str, n: int) -> Path:
    """The n-th demo photograph of class `cls` (144x144 RGB JPEG)."""
    return sorted((DEMO / cls).glob("*.jpg"))[n]


def copy_demo(target: Path, per_class: int, classes: tuple[str, ...] = ("brick", "coins", "grass"),
              start: int = 0) -> list[Path]:
    """Copy demo photographs into class folders under `target`; returns the copies."""
    copies = []
    for cls in classes:
        (target / cls).mkdir(parents=True, exist_ok=True)
        for n in range(start, start + per_class):
            source = demo_image(cls, n)
            copies.append(Path(shutil.copy(source, target / cls / source.name)))
    return copies


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A PNG of a few hundred bytes that declares a side x side image (never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def truncated_copy(source: Path, target: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def demo_as(cls: str, n: int, target: Path, mode: str | None = None, **save) -> Path:
    """Demo image `n` of `cls` saved to `target`, optionally converted to `mode` first."""
    img = Image.open(demo_image(cls, n))
    if mode:
        img = img.convert(mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    img.save(target, **save)
    return target


def sixteen_bit_tiff(cls: str, n: int, target: Path) -> Path:
    gray = np.asarray(Image.open(demo_image(cls, n)).convert("L"), dtype=np.uint16) * 16 + 100
    Image.fromarray(gray).save(target)
    return target


def multipage_tiff(cls: str, n: int, target: Path) -> Path:
    first = Image.open(demo_image(cls, n)).convert("RGB")
    first.save(target, save_all=True, append_images=[first.rotate(90), first.rotate(180)])
    return target


def palette_png_with_transparency(cls: str, n: int, target: Path) -> Path:
    img = Image.open(demo_image(cls, n)).convert("RGB").quantize(64)
    img.save(target, transparency=0)
    return target


def exif_rotated_jpeg(cls: str, n: int, target: Path) -> Path:
    img = Image.open(demo_image(cls, n)).convert("RGB").crop((0, 0, 144, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    img.save(target, exif=exif, quality=90)
    return target


def dicom_copy(target: Path, sample: str = "CT_small.dcm", patient_name: str | None = None,
               patient_id: str | None = None, instance: int = 1) -> Path:
    """A copy of one of pydicom's test files, with the patient fields set (different bytes per instance)."""
    ds = pydicom.dcmread(get_testdata_file(sample))
    if patient_name is not None:
        ds.PatientName = patient_name
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.InstanceNumber = instance
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


def dicom_without_pixels(target: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


def dicom_undecodable(target: Path) -> Path:
    """Transfer syntax JPEG 2000 over raw samples: no decoder can turn it into pixels."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEG2000
    ds.PixelData = encapsulate([bytes(ds.PixelData)])
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


def files_under(folder: Path) -> list[Path]:
    """Every regular file below `folder` (hidden ones too), links not followed."""
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                found.append(path)
    return found


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def python() -> str:
    return sys.executable
