"""Find the images of a dataset source without decoding them: class folders, train/val/test folders of
classes, or a CSV/TSV list of path, label and optional group (patient) columns."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from desktop_tl.core.data import label_sets
from desktop_tl.core.data.imageio import IMAGE_SUFFIXES, is_dicom_file
from desktop_tl.core.data.index import Skipped
from desktop_tl.core.errors import UserError

# Per-process salt: group hashes only link images within one import, never across runs.
_GROUP_SALT = secrets.token_bytes(16)
_OS_CLUTTER = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
_SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_PATH_HEADERS = frozenset({"path", "file", "filename", "file_name", "filepath", "file_path", "image", "image_path", "img"})
_LABEL_HEADERS = frozenset({"label", "class", "category", "target", "diagnosis"})
_GROUP_HEADERS = frozenset({"group", "group_id", "patient", "patient_id", "patientid", "subject", "subject_id"})
# Extra columns become subgroup attributes, except those whose name suggests they identify a person.
_OWN_COLUMNS = frozenset({"suggested", "probability", "margin"})   # written by `desktop-tl suggest`, not subgroups
EXCLUDED_COLUMN = "excluded"   # a reason in this column leaves the image out, listed with the skipped files
_IDENTIFYING_WORDS = ("name", "patient", "subject", "birth", "dob", "mrn", "accession", "address", "phone", "email",
                      "ssn")
CSV_SUFFIXES = (".csv", ".tsv")
SHOW = 5  # how many examples an error or warning lists


@dataclass(frozen=True)
class Found:
    """A file that looks like an image, before it is decoded."""

    rel: str
    label: str
    split: str | None  # fixed by a train/val/test folder layout
    group: str | None  # salted hash
    attributes: tuple[tuple[str, str], ...] = ()   # extra CSV columns (site, scanner, ...) for subgroups
    labels: tuple[str, ...] | None = None   # a multi-label CSV's label set (core.data.label_sets); label is ""


@dataclass
class Scan:
    root: Path
    kind: str
    presplit: bool = False
    multi_label: bool = False   # a CSV that gives several labels per image (core.data.label_sets)
    split_folders: tuple[str, ...] = ()   # the splits a train/val/test layout gives folders for ("train", ...)
    found: list[Found] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _OS_CLUTTER


def is_image_file(path: Path) -> bool:
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


def hash_group(raw: str | None) -> str | None:
    if not raw:
        return None
    return hashlib.sha256(_GROUP_SALT + raw.encode("utf-8")).hexdigest()[:20]


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def scan_folder(root: Path) -> Scan:
    scan = Scan(root=root, kind="folder")
    top_dirs, top_files = _visible_entries(root)
    split_dirs: dict[str, Path] = {}
    for folder in top_dirs:
        canonical = _SPLIT_FOLDERS.get(folder.name.lower())
        if canonical and canonical not in split_dirs:
            split_dirs[canonical] = folder
    if split_dirs and "train" not in split_dirs:
        have = ", ".join(f"{p.name}/" for p in split_dirs.values())
        raise UserError(f"{root} has {have} but no train/ folder.",
                        "For fixed splits use train/ (and val/, test/ if you have them), each with one subfolder "
                        "per class; otherwise put the class folders directly in the dataset folder.")
    visited: set[str] = set()
    for path in top_files:
        scan.skipped.append(Skipped(_rel(path, root), "not inside a class folder"))
    if split_dirs:
        scan.presplit, scan.split_folders = True, tuple(sorted(split_dirs))
        for folder in top_dirs:
            if folder not in split_dirs.values():
                scan.warnings.append(f"Folder '{folder.name}' was ignored: with train/ present only "
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


def _collect_class(scan: Scan, class_dir: Path, split: str | None, visited: set[str]) -> None:
    found_before = len(scan.found)
    for path in _walk_files(class_dir, os.path.realpath(scan.root), visited):
        rel = _rel(path, scan.root)
        if not path.is_file():
            scan.skipped.append(Skipped(rel, "not a regular file (broken link?)"))
        elif is_image_file(path):
            scan.found.append(Found(rel, class_dir.name, split, None))
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


def _csv_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells) of every non-empty row; UserError when unreadable or empty."""
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
    return rows


def _csv_columns(rows: list[tuple[int, list[str]]], root: Path) -> tuple[bool, int, int, int | None]:
    """(has a header row, path column, label column, group column or None): named by a header when the first
    row is one (a known column name, or a first cell that is no image), else path, label[, group]."""
    header = [cell.lower() for cell in rows[0][1]]
    first_path = rows[0][1][0]
    has_header = bool(set(header) & (_PATH_HEADERS | _LABEL_HEADERS | _GROUP_HEADERS)) or not (
        Path(first_path).suffix.lower() in IMAGE_SUFFIXES | {".dcm"} or (root / first_path).is_file())
    if has_header:
        path_col = next((i for i, name in enumerate(header) if name in _PATH_HEADERS), 0)
        label_col = next((i for i, name in enumerate(header) if name in _LABEL_HEADERS), 1 if path_col == 0 else 0)
        return True, path_col, label_col, next((i for i, name in enumerate(header) if name in _GROUP_HEADERS), None)
    return False, 0, 1, 2 if any(len(row) >= 3 for _, row in rows) else None


def _attribute_columns(header: list[str], used: set[int | None]) -> tuple[list[tuple[int, str]], list[str]]:
    """The extra columns to read as subgroup attributes, (index, name); and the names refused as identifying."""
    kept, refused = [], []
    for col, name in enumerate(cell.strip() for cell in header):
        if col in used or not name or name.lower() in _OWN_COLUMNS:
            continue
        words = name.lower().replace("-", "_").replace(" ", "_").split("_")
        if any(word in _IDENTIFYING_WORDS for word in words) or "name" in name.lower():
            refused.append(name)
        else:
            kept.append((col, name))
    return kept, refused


def scan_csv(csv_path: Path) -> Scan:
    """The images a CSV/TSV lists (paths relative to its folder), with what was left out and why."""
    root = csv_path.parent
    scan = Scan(root=root, kind="csv")
    rows = _csv_rows(csv_path)
    has_header, path_col, label_col, group_col = _csv_columns(rows, root)
    extra: list[tuple[int, str]] = []
    excluded_col, flags = None, []
    if has_header:
        excluded_col = next((i for i, name in enumerate(rows[0][1]) if name.lower() == EXCLUDED_COLUMN), None)
        label_col, flags = _label_set_columns(rows, path_col, label_col, group_col, excluded_col)
        scan.multi_label = label_col is None or rows[0][1][label_col].lower() in label_sets.LABELS_HEADERS
        extra, refused = _attribute_columns(rows[0][1], {path_col, label_col, group_col, excluded_col,
                                                         *(col for col, _ in flags)})
        if refused:
            scan.warnings.append(f"Column(s) {', '.join(refused)} of {csv_path.name} look like they identify people; "
                                 "they are not read (rename a column if it only names a site or scanner).")
        rows = rows[1:]

    def cell(row: list[str], col: int | None) -> str:
        return row[col] if col is not None and col < len(row) else ""

    seen: dict[str, tuple[int, str]] = {}
    missing: list[tuple[str, str]] = []  # (as written in the CSV, relative to its folder)
    repeated = 0
    for line, row in rows:
        listed, label = cell(row, path_col), cell(row, label_col)
        labels = None
        if scan.multi_label:
            labels = label_sets.labels_from_flags(row, flags) if flags else label_sets.parse_label_cell(label)
            label = label_sets.SEPARATOR.join(labels) or "(none)"     # how the checks below name the set
        if not listed:
            scan.skipped.append(Skipped(f"(line {line})", f"line {line}: no file path"))
            continue
        full = _resolve_listed(listed, root)
        try:
            rel = _rel(full, root)
        except ValueError:  # another drive on Windows
            scan.skipped.append(Skipped(f"(line {line})", f"line {line}: on another drive than the CSV file"))
            continue
        if not label and labels is None:
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
        if cell(row, excluded_col):
            scan.skipped.append(Skipped(rel, f"line {line}: left out ({cell(row, excluded_col)})"))
        elif not full.is_file():
            missing.append((listed, rel))
            scan.skipped.append(Skipped(rel, f"line {line}: file not found"))
        elif not is_image_file(full):
            scan.skipped.append(Skipped(rel, "not an image file type"))
        else:
            attributes = tuple((name, cell(row, col).strip()) for col, name in extra if cell(row, col).strip())
            scan.found.append(Found(rel, "" if labels is not None else label, None, hash_group(cell(row, group_col)),
                                    attributes, labels))
    if missing and not scan.found:
        shown = ", ".join(listed for listed, _ in missing[:SHOW])
        raise UserError(f"None of the {len(missing)} files listed in {csv_path.name} exist (first: {shown}).",
                        f"Paths are read relative to the folder that holds the CSV file ({root}); "
                        "fix the paths or move the CSV next to the images.")
    if missing:
        scan.warnings.append(f"{len(missing)} files listed in {csv_path.name} were not found "
                             f"(first: {', '.join(rel for _, rel in missing[:SHOW])}).")
    if repeated:
        scan.warnings.append(f"{repeated} repeated lines in {csv_path.name} were counted once.")
    if not scan.multi_label:
        scan.warnings += _several_labels_per_image(csv_path.name, scan.found, extra, rows)
    return scan


def _label_set_columns(rows: list[tuple[int, list[str]]], path_col: int, label_col: int, group_col: int | None,
                       excluded_col: int | None) -> tuple[int | None, list[tuple[int, str]]]:
    """The label column, and for a table of one 0/1 column per label (no label column) those columns: a header
    naming a `labels` column gives label sets joined with ';'; a header naming neither it nor a label column,
    with two or more columns of only 0 and 1, gives one column per label (label column None)."""
    header = [cell.lower() for cell in rows[0][1]]
    sets = next((i for i, name in enumerate(header) if name in label_sets.LABELS_HEADERS), None)
    if any(name in _LABEL_HEADERS for name in header):
        return label_col, []
    if sets is not None:
        return sets, []
    candidates = [(col, name.strip()) for col, name in enumerate(rows[0][1])
                  if col not in {path_col, group_col, excluded_col} and name.strip()]
    flags = label_sets.flag_columns(candidates, rows[1:])
    return (None, flags) if len(flags) >= 2 else (label_col, [])


def _several_labels_per_image(name: str, found: list[Found], extra: list[tuple[int, str]],
                              rows: list[tuple[int, list[str]]]) -> list[str]:
    """Warnings for a table that gives several labels per image, which the app reads as one label each: labels
    joined with ';' (each combination becomes a class of its own), or columns of only 0 and 1 (one per label)."""
    warnings = []
    joined = sorted({f.label for f in found if ";" in f.label})
    if joined:
        classes = len({f.label for f in found})
        warnings.append(f"{len(joined)} labels in {name} name several findings joined with ';' (such as "
                        f"{joined[0]!r}): each combination is read as a class of its own ({classes} classes). "
                        "For several labels per image, name the column 'labels' (labels joined with ';'); "
                        "otherwise give each image the one label that matters.")
    flags = [column for _, column in label_sets.flag_columns(extra, rows)]
    if len(flags) >= 2:
        warnings.append(f"Columns {', '.join(flags)} of {name} hold only 0 and 1, like one column per label of a "
                        "multi-label table: with a label column, the label is read from it alone, and those are kept "
                        "as attributes for subgroup figures. Remove the label column to read one label per column.")
    return warnings


def no_images_error(source: Path, scan: Scan) -> UserError:
    examples = "; ".join(f"{s.path}: {s.reason}" for s in scan.skipped[:SHOW])
    note = f" ({len(scan.skipped)} other files were left out, e.g. {examples})" if scan.skipped else ""
    if scan.kind == "csv":
        return UserError(f"{source.name} lists no usable images{note}.",
                         "List one image per line as: path, label (paths relative to the CSV's folder).")
    return UserError(
        f"No image files found in {source}{note}.",
        "Put the images in one subfolder per class (for example cats/ and dogs/), or in train/ and val/ "
        "folders that each hold the class subfolders. Supported: JPEG, PNG, BMP, TIFF, WebP, GIF and DICOM.")
