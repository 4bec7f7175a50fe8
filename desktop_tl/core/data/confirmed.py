"""Labels an expert confirmed with label assist: a labels CSV (path,label; paths relative to the CSV's folder)
that grows batch by batch, and the dataset with those images joined to its training split.

The user's files are never moved or copied: the CSV names them where they are, and it imports on its own like
any labels CSV."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath, PureWindowsPath

from desktop_tl.core.atomic import atomic_write_csv
from desktop_tl.core.data.importer import check_scanned
from desktop_tl.core.data.index import DatasetIndex, Sample, Skipped, count_warnings, find_duplicates
from desktop_tl.core.data.scan import scan_csv
from desktop_tl.core.errors import UserError

SHARED_LABELS_FILE = "confirmed_labels.csv"
"""The name earlier versions gave the confirmed labels of every project saved in one folder (they shared it)."""


def read_confirmed(path: Path) -> dict[str, str]:
    """The confirmed labels (path as written in the CSV -> class); {} while the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read the labels file {path.name} ({exc}).",
                        "Check that it is a readable CSV file, or choose another file name.") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return {}
    if [cell.strip().lower() for cell in rows[0][:2]] != ["path", "label"]:
        raise UserError(f"{path.name} is not a labels CSV (its first line should be: path,label).",
                        "Move that file away, or choose another file name for the confirmed labels.")
    return {row[0]: row[1] for row in rows[1:] if len(row) >= 2 and row[0] and row[1]}


def save_confirmed(path: Path, labels: Mapping[str, str]) -> int:
    """Add `labels` (path relative to the CSV's folder -> class) to the labels CSV at `path`, a later label of
    an image replacing an earlier one, written atomically; the number of images the file lists."""
    path = Path(path)
    for name in labels:
        if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute():
            raise ValueError(f"confirmed labels need paths relative to the CSV's folder, got {name!r}")
    merged = read_confirmed(path) | dict(labels)
    atomic_write_csv(path, [["path", "label"], *sorted(merged.items())])
    return len(merged)


def copy_confirmed(source: Path, target: Path) -> int:
    """Copy the confirmed labels of `source` into `target` (merged with any it holds, written atomically), each
    path rewritten relative to `target`'s folder so it still names the same image; the number `target` lists."""
    source, target = Path(source).absolute(), Path(target).absolute()
    rebased = {Path(os.path.relpath(os.path.normpath(source.parent / name), target.parent)).as_posix(): label
               for name, label in read_confirmed(source).items()}
    return save_confirmed(target, rebased)


def with_confirmed(index: DatasetIndex, labels_csv: Path, progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> DatasetIndex:
    """`index` plus the images `labels_csv` labels, every one in the training split (each decoded once to check
    it). The validation and test images stay as they are: a new run is measured on the same images as the
    last, and images picked because the model hesitated on them never enter a test. Images already in the
    dataset are not added twice; a copy of a dataset image and a label that is no class of the dataset are
    left out and listed with the skipped files."""
    labels_csv = Path(labels_csv).absolute()
    if index.multi_label:       # label assist gives one label per image: nothing to join to label sets
        return replace(index, warnings=index.warnings + [
            f"The labels confirmed with label assist ({labels_csv.name}) give one label per image; they are not "
            "joined to this dataset, which gives several labels per image."])
    scan = scan_csv(labels_csv)
    usable = check_scanned(scan, progress, should_stop)
    label_of = {name: i for i, name in enumerate(index.classes)}
    paths, contents = {s.path for s in index.samples}, {s.sha256 for s in index.samples}
    added: list[Sample] = []
    skipped = [Skipped(s.path, f"{labels_csv.name}: {s.reason}") for s in scan.skipped]
    for found, digest in usable:
        path = Path(os.path.relpath(scan.root / found.rel, index.root)).as_posix()
        if path in paths:
            continue
        if found.label not in label_of:
            skipped.append(Skipped(path, f"{labels_csv.name}: labelled {found.label!r}, which is not a class of "
                                         "the dataset"))
        elif digest in contents:
            skipped.append(Skipped(path, f"{labels_csv.name}: identical to an image already in the dataset"))
        else:
            paths.add(path)
            contents.add(digest)
            added.append(Sample(path, label_of[found.label], "train", digest, found.group, found.attributes))
    samples = index.samples + added
    duplicates = find_duplicates(samples)
    counted = set(count_warnings(index.classes, index.samples, index.duplicates))
    warnings = [w for w in index.warnings if w not in counted] + count_warnings(index.classes, samples, duplicates)
    return replace(index, samples=samples, skipped=index.skipped + skipped, duplicates=duplicates,
                   warnings=warnings, confirmed=index.confirmed + len(added))
