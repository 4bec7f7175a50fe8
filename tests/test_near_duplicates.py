"""Near duplicates with planted truth: resized, re-encoded, re-windowed and slightly cropped copies of real
photographs are all found, no two different photographs are paired, and the split keeps each pair together."""

from __future__ import annotations

import io
import json
import shutil
from itertools import product

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from desktop_tl.cli import main
from desktop_tl.core.config import SplitConfig
from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.data.near_duplicates import (
    MIN_CORRELATION,
    image_hashes,
    near_duplicate_pairs,
    pixel_correlation,
    pixel_signature,
)

from helpers import DEMO_IMAGES, copy_demo_subset


def _crop(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * share), round(h * share), w - round(w * share), h - round(h * share)))


def _jpeg(image: Image.Image, quality: int = 60) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


VARIANTS = {
    "resized": lambda im: im.resize((im.width // 2, im.height // 2)),
    "reencoded": lambda im: _jpeg(im, 50),
    "cropped": lambda im: _crop(im, 0.04),
    "rewindowed": lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.2)).enhance(1.3),
}


def _planted(root, originals_per_class=20, copied=2):
    """Real demo photographs of three materials, and four altered copies of the first `copied` of each."""
    data = copy_demo_subset(root, originals_per_class, ("brick", "grass", "gravel"))
    planted = set()
    for class_dir in sorted(data.iterdir()):
        for original in sorted(class_dir.glob("*.jpg"))[:copied]:
            for name, change in VARIANTS.items():
                copy = class_dir / f"{original.stem}-{name}.png"
                change(Image.open(original)).save(copy)
                planted.add(frozenset({f"{class_dir.name}/{original.name}", f"{class_dir.name}/{copy.name}"}))
    return data, planted


def test_every_planted_copy_is_found_and_no_two_originals_are_paired(tmp_path):
    data, planted = _planted(tmp_path / "data")
    index = import_dataset(data, SplitConfig(group_near_duplicates=True))
    found = {frozenset(n.paths) for n in index.near_duplicates}
    assert planted <= found, planted - found
    originals = {p for pair in planted for p in pair if "-" not in p}
    for pair in found:                                   # copies of one original pair with each other too
        stems = {p.split("/")[1].split("-")[0].split(".")[0] for p in pair}
        assert len(stems) == 1, f"two different photographs paired: {sorted(pair)}"
    assert len(originals) == 6
    assert not any(n.cross_split for n in index.near_duplicates)    # each cluster kept in one split
    split_of = {s.path: s.split for s in index.samples}
    for pair in found:
        assert len({split_of[p] for p in pair}) == 1
    again = DatasetIndex.from_json(json.loads(json.dumps(index.to_json("data"))), tmp_path)
    assert {frozenset(n.paths) for n in again.near_duplicates} == found
    assert again.near_twins_before_fix == index.near_twins_before_fix


def test_no_false_pair_among_all_144_demo_photographs(tmp_path):
    data = copy_demo_subset(tmp_path / "all", 36)
    hashes = {str(p): image_hashes(Image.open(p)) for p in sorted(data.rglob("*.jpg"))}
    assert len(hashes) == 144 and near_duplicate_pairs(hashes) == []


def test_pairs_across_the_datasets_own_folders_are_a_warning_and_import_check_lists_them(tmp_path, capsys):
    data, _ = _planted(tmp_path / "flat", originals_per_class=8, copied=1)
    presplit = tmp_path / "presplit"
    for class_dir in data.iterdir():
        for image in class_dir.iterdir():
            split = "val" if "-" in image.stem else "train"   # every copy in val, its original in train
            (presplit / split / class_dir.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, presplit / split / class_dir.name / image.name)
    index = import_dataset(presplit)
    crossing = [n for n in index.near_duplicates if n.cross_split]
    assert len(crossing) >= 12
    assert any("near-duplicate images" in w and "different splits" in w for w in index.warnings)
    assert main(["import-check", str(presplit)]) == 0
    out = capsys.readouterr().out
    assert "Near duplicates" in out and "(different splits)" in out


def test_flat_images_are_not_near_duplicates_of_each_other():
    flat = {f"{i}.png": image_hashes(Image.new("RGB", (32, 32), (i * 20, 40, 90))) for i in range(5)}
    assert all(h is None for h in flat.values()) and near_duplicate_pairs(flat) == []
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    pairs = near_duplicate_pairs({"a": image_hashes(Image.fromarray(noise)),
                                  "b": image_hashes(Image.fromarray(noise).resize((48, 48)))})
    assert pairs and pairs[0][:2] == ("a", "b")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_kind_of_copy_stays_within_the_distance(name):
    photo = Image.open(sorted(DEMO_IMAGES.rglob("*.jpg"))[0])
    a, b = image_hashes(photo), image_hashes(VARIANTS[name](photo))
    assert min(int(np.unpackbits(x ^ y).sum()) for x, y in product(a, b)) <= 6


def test_without_grouping_pairs_may_cross_splits_and_the_import_says_how_to_keep_them_together(tmp_path, capsys):
    data, planted = _planted(tmp_path / "data", copied=4)
    index = import_dataset(data)                                        # the default: reported, not regrouped
    assert {frozenset(n.paths) for n in index.near_duplicates} >= planted
    if any(n.cross_split for n in index.near_duplicates):
        assert any("--group-near-duplicates" in w for w in index.warnings)
    assert main(["import-check", str(data), "--group-near-duplicates"]) == 0
    assert "0 across splits" in capsys.readouterr().out


def test_look_alike_chains_are_not_grouped_into_one_unit():
    from desktop_tl.core.data.near_duplicates import MAX_CLUSTER, near_duplicate_clusters

    chain = [(f"{i:02d}.png", f"{i + 1:02d}.png", 4) for i in range(20)]      # 21 images that all look alike
    assert near_duplicate_clusters(chain) == {}
    small = near_duplicate_clusters([("a", "b", 0), ("b", "c", 2)])
    assert small == {"a": "a", "b": "a", "c": "a"} and MAX_CLUSTER >= 3


def test_a_set_of_look_alikes_is_called_that_instead_of_copies(tmp_path):
    from desktop_tl.core.data.index import look_alikes, near_duplicate_lines

    root = tmp_path / "cells"
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    for name in ("ok", "crack"):                      # 20 images per class, all nearly the same picture
        (root / name).mkdir(parents=True)
        for i in range(20):
            noise = rng.integers(0, 6, (64, 64), dtype=np.uint8)
            Image.fromarray(base + noise).save(root / name / f"{i}.png")
    index = import_dataset(root)
    assert look_alikes(index) and "look alike" in " ".join(near_duplicate_lines(index))


def test_a_very_large_set_says_near_duplicates_were_not_looked_for(tmp_path, monkeypatch):
    from desktop_tl.core.data import importer

    monkeypatch.setattr(importer, "MAX_IMAGES", 10)
    data = copy_demo_subset(tmp_path / "big", 6, ("brick", "grass"))
    index = import_dataset(data)
    assert any("Near duplicates were not looked for" in w for w in index.warnings) and index.near_duplicates == []


def test_look_alikes_that_the_hash_pairs_are_dropped_by_the_pixel_check_and_copies_kept():
    photos = sorted((DEMO_IMAGES / "gravel").glob("*.jpg"))[:2]
    first, other = (Image.open(p) for p in photos)
    copies = {name: change(first) for name, change in VARIANTS.items()}
    same_hash = image_hashes(first)                   # as if every image were within the hash distance
    hashes = {"first": same_hash, "other": same_hash, **{name: same_hash for name in copies}}
    signatures = {"first": pixel_signature(first), "other": pixel_signature(other),
                  **{name: pixel_signature(copy) for name, copy in copies.items()}}
    kept = {frozenset(p[:2]) for p in near_duplicate_pairs(hashes, signatures=signatures)}
    assert all(frozenset({"first", name}) in kept for name in copies)          # every copy still pairs
    assert not any("other" in pair for pair in kept)                          # a look-alike does not
    assert pixel_correlation(signatures["first"], signatures["other"]) < MIN_CORRELATION
    assert len(near_duplicate_pairs(hashes)) == len(hashes) * (len(hashes) - 1) // 2    # the hash alone pairs all
