"""Near duplicates on look-alike sets: how many pairs the perceptual hash alone finds (before) and how many the
second check of the grey pixels keeps (after), and the recall of planted copies under both, side by side.

Every image of a set is compared with every other by its hashes (core.data.near_duplicates); the pairs found
are look-alikes unless the set holds copies (these sets hold none known: quality_data drops byte-identical
repeats). For 60 images per set drawn with a fixed seed, four altered copies each (half size, JPEG quality 50,
4% cropped, brighter and more contrast) are planted, and whether each copy pairs with its original is checked.

    python benchmarks/near_duplicates.py --data /tmp/quality-data --sets animals,textures,digits,elpv
(the sets come from benchmarks/quality_data.py).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import time
from pathlib import Path

from PIL import Image, ImageEnhance

from desktop_tl.core.data.imageio import load_image
from desktop_tl.core.data.near_duplicates import (
    MIN_CORRELATION,
    image_hashes,
    near_duplicate_pairs,
    pixel_correlation,
    pixel_signature,
)

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _crop(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * share), round(h * share), w - round(w * share), h - round(h * share)))


CHANGES = {
    "resized": lambda im: im.resize((max(8, im.width // 2), max(8, im.height // 2))),
    "re-encoded": lambda im: _jpeg(im, 50),
    "cropped": lambda im: _crop(im, 0.04),
    "re-windowed": lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.2)).enhance(1.3),
}


def measure(name: str, folder: Path, planted_from: int = 60, seed: int = 0) -> str:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    images = {str(f.relative_to(folder)): load_image(f) for f in files}
    hashes = {k: image_hashes(v) for k, v in images.items()}
    signatures = {k: pixel_signature(v) for k, v in images.items() if hashes[k] is not None}
    started = time.perf_counter()
    before = near_duplicate_pairs(hashes)
    hash_seconds = time.perf_counter() - started
    started = time.perf_counter()
    after = near_duplicate_pairs(hashes, signatures=signatures)
    check_seconds = time.perf_counter() - started - hash_seconds
    found_before = found_after = planted = 0
    for key in random.Random(seed).sample(sorted(signatures), min(planted_from, len(signatures))):
        for change in CHANGES.values():
            copy = change(images[key])
            copy_hashes = image_hashes(copy)
            if copy_hashes is None:
                continue
            planted += 1
            pair = {key: hashes[key], "copy": copy_hashes}
            if near_duplicate_pairs(pair):
                found_before += 1
                if pixel_correlation(signatures[key], pixel_signature(copy)) >= MIN_CORRELATION:
                    found_after += 1
    return (f"| {name} | {len(images):,} | {len(before):,} | {len(after):,} | {found_before}/{planted} "
            f"({found_before / planted:.1%}) | {found_after}/{planted} ({found_after / planted:.1%}) | "
            f"{max(0.0, check_seconds):.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sets", default="animals,textures,digits,elpv")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; second check: grey pixels "
          f"correlate at {MIN_CORRELATION} or more")
    print("| set | images | pairs by hash alone (before) | pairs after the pixel check | planted copies found "
          "before | after | time of the check |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets.split(","):
        print(measure(name, args.data / name), flush=True)


if __name__ == "__main__":
    main()
