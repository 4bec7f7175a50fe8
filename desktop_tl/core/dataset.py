"""Import a labelled image dataset: scan, validate every file, find duplicates, split.

Sources: a folder with one subfolder per class, a folder with train/ and val/ (and
optionally test/) that each hold class subfolders, or a CSV/TSV file of path and label.

Split rule (when the source does not fix the splits): per class, validation and test
each get round(n * fraction) images, at least one each when the class has three or more
independent units (images, or patients when grouping), and training always keeps at
least one. Units are whole patients (with `group_by_patient`) merged with identical
files, so neither a patient nor a file's copies straddle two splits. Units are sorted
by path, shuffled with the seed and placed largest first into the split they fill best.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Iterator

from desktop_tl.core.config import SplitConfig
from desktop_tl.core.errors import Cancelled, UserError
from desktop_tl.core.hashing import file_sha256
from desktop_tl.core.imageio import IMAGE_SUFFIXES, ImageLoadError, is_dicom_file, load_image, read_group_id

SPLITS = ("train", "val", "test")
HOLDOUT_SPLITS = ("val", "test")
FEW_IMAGES = 10
IMBALANCE_RATIO = 3.0

# Per-process salt: group hashes only link images within one import, never across runs.
_GROUP_SALT = secrets.token_bytes(16)
_OS_CLUTTER = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
_SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_PATH_HEADERS = frozenset({"path", "file", "filename", "file_name", "filepath", "file_path", "image", "image_path", "img"})
_LABEL_HEADERS = frozenset({"label", "class", "category", "target", "diagnosis"})
_GROUP_HEADERS = frozenset({"group", "group_id", "patient", "patient_id", "patientid", "subject", "subject_id"})
_CSV_SUFFIXES = (".csv", ".tsv")
_SHOW = 5  # how many examples an error or warning lists


@dataclass(frozen=True)
class Sample:
    """One usable image."""

    path: str  # POSIX path relative to the dataset root
    label: int  # index into DatasetIndex.classes
    split: str  # "train" | "val" | "test"
    sha256: str
    group: str | None = None  # salted hash of patient/group id; in memory only, never written


@dataclass(frozen=True)
class Skipped:
    """A file left out of the dataset, and why."""

    path: str  # relative to the dataset root
    reason: str


@dataclass
class DuplicateSet:
    """Files with identical bytes."""

    sha256: str
    paths: list[str]
    cross_split: bool  # True when copies landed in different splits (a leak)


@dataclass
class DatasetIndex:
    """The result of an import: classes, samples with their split, and what was left out."""

    root: Path  # absolute, in memory only
    source: Path  # folder or CSV file the user gave (absolute, in memory only)
    source_kind: str  # "folder" | "csv"
    classes: list[str]
    samples: list[Sample]
    skipped: list[Skipped]
    duplicates: list[DuplicateSet]
    warnings: list[str]

    def split(self, name: str) -> list[Sample]:
        """The samples of split `name` ("train", "val" or "test")."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class and split: {class: {"train": n, "val": n, "test": n}}."""
        table = {name: dict.fromkeys(SPLITS, 0) for name in self.classes}
        for sample in self.samples:
            table[self.classes[sample.label]][sample.split] += 1
        return table

    def abs_path(self, sample: Sample) -> Path:
        """Where the sample's file is on this machine."""
        return self.root / sample.path

    def to_report(self) -> dict[str, Any]:
        """A JSON-safe summary with relative paths only (no root, no patient ids)."""
        counts = self.counts()
        return {
            "source_kind": self.source_kind,
            "classes": [{"name": name, **counts[name], "total": sum(counts[name].values())} for name in self.classes],
            "totals": {s: len(self.split(s)) for s in SPLITS} | {"total": len(self.samples)},
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "duplicates": [{"sha256": d.sha256, "paths": list(d.paths), "cross_split": d.cross_split}
                           for d in self.duplicates],
            "warnings": list(self.warnings),
        }

    def to_json(self, relative_source: str) -> dict[str, Any]:
        """The index for a run folder; `relative_source` is the source relative to that folder."""
        if PurePosixPath(relative_source).is_absolute() or PureWindowsPath(relative_source).is_absolute():
            raise ValueError("to_json needs the source as a relative path")
        return {
            "source": relative_source,
            "source_kind": self.source_kind,
            "classes": list(self.classes),
            "samples": [{"path": s.path, "label": s.label, "split": s.split, "sha256": s.sha256} for s in self.samples],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], base_dir: Path) -> DatasetIndex:
        """Rebuild an index written by `to_json`; the source is resolved relative to `base_dir`.

        Raises UserError when the record is malformed or the data folder no longer exists.
        """
        if not isinstance(data, dict):
            raise _damaged("it is not an object")
        source_text = data.get("source")
        kind = data.get("source_kind")
        classes = data.get("classes")
        if not isinstance(source_text, str) or not source_text or "\0" in source_text:
            raise _damaged("'source' must be a path")
        if kind not in ("folder", "csv"):
            raise _damaged("'source_kind' must be 'folder' or 'csv'")
        if (not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes)
                or len(set(classes)) != len(classes)):
            raise _damaged("'classes' must list at least two different names")
        samples = [_sample_from_json(item, len(classes)) for item in _json_list(data, "samples")]
        skipped = [_skipped_from_json(item) for item in _json_list(data, "skipped")]
        source = (Path(base_dir) / source_text).resolve()  # links resolved before '..', as on disk
        root = source if kind == "folder" else source.parent
        if not root.is_dir():
            raise UserError(f"The data folder of this run is gone: {root} does not exist.",
                            "Put the images back where they were, or import the dataset again.")
        duplicates = _find_duplicates(samples)
        return cls(root=root, source=source, source_kind=kind, classes=list(classes), samples=samples,
                   skipped=skipped, duplicates=duplicates, warnings=_count_warnings(classes, samples, duplicates))


def import_dataset(source: Path, split: SplitConfig | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> DatasetIndex:
    """Scan `source` (class folders, train/val[/test] folders, or a CSV/TSV), validate and split it.

    Every image is decoded once to check it (and then dropped); `progress(done, total)` is
    called per file and `should_stop()` checked before each one (raises Cancelled).
    Raises UserError when the dataset cannot be used, with what to do about it.
    """
    config = split or SplitConfig()
    config.validate()
    source = Path(source).expanduser().absolute()
    if not source.exists():
        raise UserError(f"The dataset {source} does not exist.", "Check the path, or pick the folder or CSV file again.")
    if source.is_dir():
        scan = _scan_folder(source)
    elif source.suffix.lower() in _CSV_SUFFIXES:
        scan = _scan_csv(source)
    else:
        raise UserError(f"{source} is neither a folder nor a .csv/.tsv file.",
                        "Choose a folder with one subfolder per class, or a CSV file of path and label.")
    if not scan.found:
        raise _no_images_error(source, scan)

    usable = _validate(scan, progress, should_stop)
    classes = sorted({f.label for f in scan.found})
    _check_usable(source, classes, scan, usable)
    label_of = {name: i for i, name in enumerate(classes)}
    items = sorted(
        (_Item(f.rel, label_of[f.label], f.split, digest, f.group) for f, digest in usable),
        key=lambda item: item.rel,
    )
    warnings = list(scan.warnings)
    if scan.presplit:
        _check_presplit(classes, items)
        splits = [item.split or "train" for item in items]
        warnings.extend(_group_leak_warnings(items, splits))
    else:
        splits, kept_in_train = _assign_splits(items, len(classes), config)
        warnings.extend(_single_group_warning(classes[c], items, c) for c in kept_in_train)
    samples = [Sample(item.rel, item.label, s, item.sha256, item.group) for item, s in zip(items, splits)]
    duplicates = _find_duplicates(samples)
    warnings.extend(_count_warnings(classes, samples, duplicates))
    return DatasetIndex(root=scan.root, source=source, source_kind=scan.kind, classes=classes, samples=samples,
                        skipped=scan.skipped, duplicates=duplicates, warnings=warnings)


def format_report(index: DatasetIndex) -> str:
    """A plain-text summary for the terminal (`desktop-tl import-check`)."""
    counts = index.counts()
    width = max([len("class")] + [len(name) for name in index.classes])
    kind = "class folders" if index.source_kind == "folder" else "CSV file"
    lines = [
        f"Dataset: {index.source.name} ({kind})",
        f"{len(index.classes)} classes, {len(index.samples)} usable images, "
        f"{len(index.skipped)} skipped, {len(index.duplicates)} sets of identical files",
        "",
        f"  {'class':<{width}}  {'train':>6}  {'val':>6}  {'test':>6}  {'total':>6}",
    ]
    for name in index.classes:
        row = counts[name]
        lines.append(f"  {name:<{width}}  {row['train']:>6}  {row['val']:>6}  {row['test']:>6}  {sum(row.values()):>6}")
    totals = {s: len(index.split(s)) for s in SPLITS}
    lines.append(f"  {'all':<{width}}  {totals['train']:>6}  {totals['val']:>6}  {totals['test']:>6}  {len(index.samples):>6}")
    if index.skipped:
        lines += ["", f"Skipped files ({len(index.skipped)}):"]
        lines += [f"  {s.path}: {s.reason}" for s in index.skipped[:20]]
        if len(index.skipped) > 20:
            lines.append(f"  ... and {len(index.skipped) - 20} more")
    cross = [d for d in index.duplicates if d.cross_split]
    if cross:
        lines += ["", f"Identical files in different splits ({len(cross)}):"]
        lines += [f"  {' = '.join(d.paths)}" for d in cross[:20]]
    if index.warnings:
        lines += ["", "Warnings:"]
        lines += [f"  - {w}" for w in index.warnings]
    return "\n".join(lines)


# --- scanning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """A file that looks like an image, before it is decoded."""

    rel: str
    label: str
    split: str | None  # fixed by a train/val/test folder layout
    group: str | None  # salted hash


@dataclass(frozen=True)
class _Item:
    rel: str
    label: int
    split: str | None
    sha256: str
    group: str | None


@dataclass
class _Scan:
    root: Path
    kind: str
    presplit: bool = False
    found: list[_Found] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _OS_CLUTTER


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(path)


def _visible_entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """Sorted visible subfolders and files of `folder` (links followed)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return [], []
    dirs = [Path(e.path) for e in entries if not _is_hidden(e.name) and e.is_dir()]
    files = [Path(e.path) for e in entries if not _is_hidden(e.name) and not e.is_dir()]
    return dirs, files


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_files(top: Path, root_real: str, visited: set[str]) -> Iterator[Path]:
    """Every visible file below `top`, without loops.

    A linked folder is followed when it points outside the dataset (each real folder once);
    links back into the dataset or to a folder holding it are ignored, as their files
    are scanned where they really are.
    """
    stack = [top]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in visited or (folder.is_symlink() and (_inside(real, root_real) or _inside(root_real, real))):
            continue
        visited.add(real)
        dirs, files = _visible_entries(folder)
        yield from files
        stack.extend(reversed(dirs))


def _hash_group(raw: str | None) -> str | None:
    if not raw:
        return None
    return hashlib.sha256(_GROUP_SALT + raw.encode("utf-8")).hexdigest()[:20]


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _scan_folder(root: Path) -> _Scan:
    scan = _Scan(root=root, kind="folder")
    top_dirs, top_files = _visible_entries(root)
    split_dirs: dict[str, Path] = {}
    for folder in top_dirs:
        canonical = _SPLIT_FOLDERS.get(folder.name.lower())
        if canonical and canonical not in split_dirs:
            split_dirs[canonical] = folder
    if split_dirs and not {"train", "val"} <= split_dirs.keys():
        have = ", ".join(f"{p.name}/" for p in split_dirs.values())
        raise UserError(f"{root} has {have} but not both train/ and val/ folders.",
                        "For fixed splits use train/ and val/ (and optionally test/), each with one subfolder "
                        "per class; otherwise put the class folders directly in the dataset folder.")
    visited: set[str] = set()
    for path in top_files:
        scan.skipped.append(Skipped(_rel(path, root), "not inside a class folder"))
    if split_dirs:
        scan.presplit = True
        for folder in top_dirs:
            if folder not in split_dirs.values():
                scan.warnings.append(f"Folder '{folder.name}' was ignored: with train/ and val/ present only "
                                     "train/, val/ and test/ are read.")
        for split_name, split_dir in split_dirs.items():
            class_dirs, loose_files = _visible_entries(split_dir)
            for path in loose_files:
                scan.skipped.append(Skipped(_rel(path, root), "not inside a class folder"))
            for class_dir in class_dirs:
                _collect_class(scan, class_dir, split_name, visited)
    else:
        for class_dir in top_dirs:
            _collect_class(scan, class_dir, None, visited)
    return scan


def _collect_class(scan: _Scan, class_dir: Path, split: str | None, visited: set[str]) -> None:
    found_before = len(scan.found)
    for path in _walk_files(class_dir, os.path.realpath(scan.root), visited):
        rel = _rel(path, scan.root)
        if not path.is_file():
            scan.skipped.append(Skipped(rel, "not a regular file (broken link?)"))
        elif _is_image_file(path):
            scan.found.append(_Found(rel, class_dir.name, split, None))
        else:
            scan.skipped.append(Skipped(rel, "not an image file type"))
    if len(scan.found) == found_before:
        scan.warnings.append(f"Folder '{_rel(class_dir, scan.root)}' has no image files and was left out.")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UserError(f"{path.name} cannot be read as text.", "Save the file as CSV (UTF-8) from your spreadsheet program.")


def _detect_delimiter(lines: list[str], suffix: str) -> str:
    """Tab for .tsv; otherwise the one of tab, ';' and ',' that splits the most lines in two."""
    if suffix == ".tsv":
        return "\t"
    best, best_rows = ",", 0
    for delimiter in ("\t", ";", ","):
        rows = sum(1 for row in csv.reader(lines, delimiter=delimiter) if len(row) >= 2)
        if rows > best_rows:
            best, best_rows = delimiter, rows
    return best


def _resolve_listed(text: str, root: Path) -> Path:
    """A path from the CSV: relative to the CSV's folder unless absolute; Windows '\\' tolerated."""
    path = Path(text)
    full = path if path.is_absolute() else root / path
    if not full.exists() and "\\" in text and os.sep == "/":
        return _resolve_listed(text.replace("\\", "/"), root)
    return Path(os.path.normpath(full))


def _scan_csv(csv_path: Path) -> _Scan:
    root = csv_path.parent
    scan = _Scan(root=root, kind="csv")
    try:
        text = _read_text(csv_path)
    except OSError as exc:
        raise UserError(f"Cannot read {csv_path}: {exc.strerror or exc}", "Check that the file is readable.") from exc
    lines = text.splitlines()
    delimiter = _detect_delimiter([line for line in lines if line.strip()][:50], csv_path.suffix.lower())
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = [(reader.line_num, [cell.strip() for cell in row]) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise UserError(f"{csv_path.name} is empty.", "List one image per line: path, label.")
    header = [cell.lower() for cell in rows[0][1]]
    first_path = rows[0][1][0]
    has_header = bool(set(header) & (_PATH_HEADERS | _LABEL_HEADERS | _GROUP_HEADERS)) or not (
        Path(first_path).suffix.lower() in IMAGE_SUFFIXES | {".dcm"} or (root / first_path).is_file())
    path_col, label_col, group_col = 0, 1, None
    if has_header:
        rows = rows[1:]
        path_col = next((i for i, name in enumerate(header) if name in _PATH_HEADERS), 0)
        label_col = next((i for i, name in enumerate(header) if name in _LABEL_HEADERS), 1 if path_col == 0 else 0)
        group_col = next((i for i, name in enumerate(header) if name in _GROUP_HEADERS), None)
    elif any(len(row) >= 3 for _, row in rows):
        group_col = 2

    def cell(row: list[str], col: int | None) -> str:
        return row[col] if col is not None and col < len(row) else ""

    seen: dict[str, tuple[int, str]] = {}
    missing: list[tuple[str, str]] = []  # (as written in the CSV, relative to its folder)
    repeated = 0
    for line, row in rows:
        listed, label = cell(row, path_col), cell(row, label_col)
        if not listed:
            scan.skipped.append(Skipped(f"(line {line})", f"line {line}: no file path"))
            continue
        full = _resolve_listed(listed, root)
        try:
            rel = _rel(full, root)
        except ValueError:  # another drive on Windows
            scan.skipped.append(Skipped(f"(line {line})", f"line {line}: on another drive than the CSV file"))
            continue
        if not label:
            scan.skipped.append(Skipped(rel, f"line {line}: empty label"))
            continue
        if rel in seen:
            first_line, first_label = seen[rel]
            if first_label == label:
                repeated += 1
            else:
                scan.skipped.append(Skipped(rel, f"line {line}: listed again with label '{label}' "
                                                 f"(line {first_line} says '{first_label}'); first kept"))
            continue
        seen[rel] = (line, label)
        if not full.is_file():
            missing.append((listed, rel))
            scan.skipped.append(Skipped(rel, f"line {line}: file not found"))
        elif not _is_image_file(full):
            scan.skipped.append(Skipped(rel, "not an image file type"))
        else:
            scan.found.append(_Found(rel, label, None, _hash_group(cell(row, group_col))))
    if missing and not scan.found:
        shown = ", ".join(listed for listed, _ in missing[:_SHOW])
        raise UserError(f"None of the {len(missing)} files listed in {csv_path.name} exist (first: {shown}).",
                        f"Paths are read relative to the folder that holds the CSV file ({root}); "
                        "fix the paths or move the CSV next to the images.")
    if missing:
        scan.warnings.append(f"{len(missing)} files listed in {csv_path.name} were not found "
                             f"(first: {', '.join(rel for _, rel in missing[:_SHOW])}).")
    if repeated:
        scan.warnings.append(f"{repeated} repeated lines in {csv_path.name} were counted once.")
    return scan


def _no_images_error(source: Path, scan: _Scan) -> UserError:
    examples = "; ".join(f"{s.path}: {s.reason}" for s in scan.skipped[:_SHOW])
    note = f" ({len(scan.skipped)} other files were left out, e.g. {examples})" if scan.skipped else ""
    if scan.kind == "csv":
        return UserError(f"{source.name} lists no usable images{note}.",
                         "List one image per line as: path, label (paths relative to the CSV's folder).")
    return UserError(
        f"No image files found in {source}{note}.",
        "Put the images in one subfolder per class (for example cats/ and dogs/), or in train/ and val/ "
        "folders that each hold the class subfolders. Supported: JPEG, PNG, BMP, TIFF, WebP, GIF and DICOM.")


# --- validation -----------------------------------------------------------------------------


def _validate(scan: _Scan, progress: Callable[[int, int], None] | None,
              should_stop: Callable[[], bool] | None) -> list[tuple[_Found, str]]:
    """Decode and hash every found file; bad ones go to scan.skipped. Returns (file, sha256) pairs."""
    total = len(scan.found)
    if progress:
        progress(0, total)
    usable: list[tuple[_Found, str]] = []
    for done, found in enumerate(scan.found, start=1):
        if should_stop and should_stop():
            raise Cancelled()
        path = scan.root / found.rel
        try:
            load_image(path).close()  # decoded only to prove it can be; not kept
            digest = file_sha256(path)
        except ImageLoadError as exc:
            scan.skipped.append(Skipped(found.rel, exc.reason))
        except OSError as exc:
            scan.skipped.append(Skipped(found.rel, f"cannot read the file ({exc.strerror or exc})"))
        else:
            group = found.group or _hash_group(read_group_id(path))
            usable.append((_Found(found.rel, found.label, found.split, group), digest))
        if progress:
            progress(done, total)
    return usable


def _check_usable(source: Path, classes: list[str], scan: _Scan, usable: list[tuple[_Found, str]]) -> None:
    if not usable:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in scan.skipped[:_SHOW])
        raise UserError(f"None of the images in {source.name} could be used: all {len(scan.skipped)} "
                        f"files were skipped (first: {reasons}).",
                        "Check that the files are real, complete images; re-export or re-copy them.")
    if len(classes) < 2:
        raise UserError(f"Only one class found in {source.name}: '{classes[0]}'.",
                        "A classifier needs at least two classes: add a folder (or labels) for another class.")
    per_class = Counter(found.label for found, _ in usable)
    small = [name for name in classes if per_class[name] < 2]
    if small:
        listed = ", ".join(f"'{name}' ({per_class[name]})" for name in small)
        raise UserError(f"Some classes have fewer than 2 usable images: {listed}.",
                        "Add more images to those classes, remove them, or fix the skipped files "
                        "(run import-check to see why files were skipped).")


def _check_presplit(classes: list[str], items: list[_Item]) -> None:
    in_train = {item.label for item in items if item.split == "train"}
    missing = [name for i, name in enumerate(classes) if i not in in_train]
    if missing:
        raise UserError(f"No usable training images for class {', '.join(repr(m) for m in missing)} in train/.",
                        "Every class needs images in train/<class>/; add some or remove the class.")


# --- splitting ------------------------------------------------------------------------------


def _units(items: list[_Item], by_group: bool) -> list[list[int]]:
    """Indices of items that must share a split: same file bytes, and same group when grouping."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        keys = [("sha", item.sha256)] + ([("group", item.group)] if by_group and item.group else [])
        for key in keys:
            a, b = find(i), find(first_with.setdefault(key, i))
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        members[find(i)].append(i)
    return sorted(members.values(), key=lambda unit: unit[0])


def _holdout_targets(n_images: int, n_units: int, config: SplitConfig) -> dict[str, int]:
    """Images per class wanted in val and test, leaving training at least one."""
    if n_units < 2:
        return dict.fromkeys(HOLDOUT_SPLITS, 0)
    targets = {}
    for name, fraction in (("val", config.val_fraction), ("test", config.test_fraction)):
        wanted = int(n_images * fraction + 0.5)
        targets[name] = max(wanted, 1) if fraction > 0 and n_units >= 3 else wanted
    while targets["val"] + targets["test"] > n_images - 1:
        larger = "test" if targets["test"] >= targets["val"] else "val"
        targets[larger] -= 1
    return targets


def _assign_splits(items: list[_Item], n_classes: int, config: SplitConfig) -> tuple[list[str], list[int]]:
    """A split per item, and the classes kept wholly in training because they form one unit."""
    units = _units(items, config.group_by_patient)
    random.Random(config.seed).shuffle(units)
    units.sort(key=len, reverse=True)  # stable: equal sizes keep the seeded order
    unit_counts = [Counter(items[i].label for i in unit) for unit in units]
    units_per_class = Counter(c for counts in unit_counts for c in counts)
    images_per_class = Counter(item.label for item in items)
    targets = {c: _holdout_targets(images_per_class[c], units_per_class[c], config) for c in range(n_classes)}
    placed = {s: Counter() for s in SPLITS}
    unit_split: list[str] = []
    for counts in unit_counts:
        best, best_gain = "train", 0
        if all(units_per_class[c] >= 2 for c in counts):
            for s in HOLDOUT_SPLITS:
                gain = 0
                for c, n in counts.items():
                    room = max(targets[c][s] - placed[s][c], 0)
                    gain += min(n, room) - max(n - room, 0)
                if gain > best_gain:
                    best, best_gain = s, gain
        unit_split.append(best)
        placed[best].update(counts)

    def move(u: int, to: str) -> None:
        placed[unit_split[u]].subtract(unit_counts[u])
        placed[to].update(unit_counts[u])
        unit_split[u] = to

    by_size = sorted(range(len(units)), key=lambda u: len(units[u]))
    # A class with 3+ units gets at least one in each holdout split the greedy pass left empty.
    for c in range(n_classes):
        for s in HOLDOUT_SPLITS:
            if units_per_class[c] >= 3 and targets[c][s] and not placed[s][c]:
                u = next((u for u in by_size if unit_split[u] == "train" and c in unit_counts[u]
                          and all(placed["train"][k] > n for k, n in unit_counts[u].items())), None)
                if u is not None:
                    move(u, s)
    # Units spanning classes can pull a class's last image out of training: put it back.
    for c in range(n_classes):
        if not placed["train"][c]:
            move(next(u for u in by_size if c in unit_counts[u]), "train")

    splits = [""] * len(items)
    for unit, s in zip(units, unit_split):
        for i in unit:
            splits[i] = s
    single = sorted(c for c in range(n_classes) if units_per_class[c] == 1)
    return splits, single


# --- findings -------------------------------------------------------------------------------


def _find_duplicates(samples: list[Sample]) -> list[DuplicateSet]:
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_hash[sample.sha256].append(sample)
    return [DuplicateSet(sha, [s.path for s in copies], len({s.split for s in copies}) > 1)
            for sha, copies in sorted(by_hash.items(), key=lambda kv: kv[1][0].path) if len(copies) > 1]


def _single_group_warning(name: str, items: list[_Item], label: int) -> str:
    groups = {item.group for item in items if item.label == label}
    if len(groups) == 1 and None not in groups:
        cause = "all its images come from one patient/group"
    else:
        cause = "all its images are copies of one file"
    return (f"Class '{name}': {cause}, so they all stay in training and the class's score "
            "cannot be measured. Add images from other patients to measure it.")


def _group_leak_warnings(items: list[_Item], splits: list[str]) -> list[str]:
    splits_of: dict[str, set[str]] = defaultdict(set)
    for item, s in zip(items, splits):
        if item.group:
            splits_of[item.group].add(s)
    leaking = sum(1 for seen in splits_of.values() if len(seen) > 1)
    if not leaking:
        return []
    return [f"{leaking} patients/groups have images in more than one of train/, val/ and test/; "
            "the validation score may be too optimistic."]


def _count_warnings(classes: list[str], samples: list[Sample], duplicates: list[DuplicateSet]) -> list[str]:
    """Warnings that follow from the samples alone: imbalance, small classes, leaks."""
    warnings = []
    totals = Counter(s.label for s in samples)
    sizes = sorted(((totals[i], name) for i, name in enumerate(classes)), key=lambda t: t[0])
    (smallest, small_name), (largest, large_name) = sizes[0], sizes[-1]
    if smallest and largest / smallest > IMBALANCE_RATIO:
        warnings.append(f"Classes are imbalanced: '{large_name}' has {largest} images but '{small_name}' only "
                        f"{smallest}. Consider class weighting or adding images to the small classes.")
    few = [f"'{name}' ({n})" for n, name in sizes if n < FEW_IMAGES]
    if few:
        warnings.append(f"Few images in {', '.join(few)}: under {FEW_IMAGES} per class, results will be unreliable.")
    in_val = {s.label for s in samples if s.split == "val"}
    unmeasured = [f"'{name}'" for i, name in enumerate(classes) if i not in in_val]
    if not in_val:
        warnings.append("There are no validation images, so training progress cannot be measured.")
    elif unmeasured:
        warnings.append(f"No validation images for {', '.join(unmeasured)}, so validation cannot measure "
                        "those classes.")
    label_of = {s.path: s.label for s in samples}
    cross = [d for d in duplicates if d.cross_split]
    if cross:
        warnings.append(f"{len(cross)} identical files sit in different splits (e.g. {' = '.join(cross[0].paths)}); "
                        "the validation score may be too optimistic. Remove the copies.")
    relabelled = [d for d in duplicates if len({label_of[p] for p in d.paths}) > 1]
    if relabelled:
        warnings.append(f"{len(relabelled)} identical files carry different labels "
                        f"(e.g. {' = '.join(relabelled[0].paths)}). Keep one copy with the right label.")
    return warnings


# --- reading a stored index -----------------------------------------------------------------


def _damaged(detail: str) -> UserError:
    return UserError(f"The stored dataset list is damaged: {detail}.",
                     "Import the dataset again, or restore the run folder from a backup.")


def _json_list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise _damaged(f"'{key}' must be a list")
    return value


def _sample_from_json(item: Any, n_classes: int) -> Sample:
    if not isinstance(item, dict):
        raise _damaged("a sample is not an object")
    path, label, split, sha = item.get("path"), item.get("label"), item.get("split"), item.get("sha256")
    if (not isinstance(path, str) or not path or "\0" in path or PurePosixPath(path).is_absolute()
            or PureWindowsPath(path).is_absolute()):
        raise _damaged(f"sample path {path!r} must be a relative path")
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n_classes:
        raise _damaged(f"sample {path!r} has label {label!r}, expected 0..{n_classes - 1}")
    if split not in SPLITS:
        raise _damaged(f"sample {path!r} has split {split!r}, expected one of {', '.join(SPLITS)}")
    if not isinstance(sha, str) or not sha:
        raise _damaged(f"sample {path!r} has no sha256")
    return Sample(path, label, split, sha)


def _skipped_from_json(item: Any) -> Skipped:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("reason"), str):
        raise _damaged("a skipped entry needs a path and a reason")
    return Skipped(item["path"], item["reason"])
