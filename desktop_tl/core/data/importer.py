"""Import a labelled image dataset: scan the source, decode every file once to check it, split it.

Sources: a folder with one subfolder per class, a folder with train/ (and val/, test/) that each hold
class subfolders (a holdout folder it lacks is taken from train/), or a CSV/TSV file of path and label (see
`scan`); the split rule is in `splitting`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from desktop_tl.core.config import SplitConfig
from desktop_tl.core.data.imageio import ImageLoadError, load_image, read_dicom_attributes, read_group_id
from desktop_tl.core.data.index import (
    HOLDOUT_SPLITS,
    DatasetIndex,
    Sample,
    Skipped,
    count_warnings,
    find_duplicates,
    near_duplicates_of,
)
from desktop_tl.core.data.multilabel_split import assign_multilabel_splits
from desktop_tl.core.data.near_duplicates import (
    MAX_IMAGES,
    image_hashes,
    near_duplicate_clusters,
    near_duplicate_pairs,
    pixel_signature,
)
from desktop_tl.core.data.scan import (
    CSV_SUFFIXES,
    SHOW,
    Found,
    Scan,
    hash_group,
    no_images_error,
    scan_csv,
    scan_folder,
)
from desktop_tl.core.data.splitting import Item, assign_splits, group_leak_warnings, single_group_warning
from desktop_tl.core.errors import Cancelled, UserError
from desktop_tl.core.hashing import file_sha256


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
        scan = scan_folder(source)
    elif source.suffix.lower() in CSV_SUFFIXES:
        scan = scan_csv(source)
    else:
        raise UserError(f"{source} is neither a folder nor a .csv/.tsv file.",
                        "Choose a folder with one subfolder per class, or a CSV file of path and label.")
    if not scan.found:
        raise no_images_error(source, scan)

    hashes: dict[str, np.ndarray | None] = {}
    signatures: dict[str, np.ndarray] = {}
    usable = _validate(scan, progress, should_stop, hashes, signatures)
    if scan.multi_label:
        classes = sorted({name for f in scan.found for name in f.labels})
        _check_label_sets(source, classes, scan, usable)
    else:
        classes = sorted({f.label for f in scan.found})
        _check_usable(source, classes, scan, usable)
    label_of = {name: i for i, name in enumerate(classes)}
    attributes = {f.rel: f.attributes for f, _ in usable}
    pairs = near_duplicate_pairs(hashes, signatures=signatures) if len(hashes) <= MAX_IMAGES else []
    if len(hashes) > MAX_IMAGES:
        scan.warnings.append(f"Near duplicates were not looked for: with more than {MAX_IMAGES:,} images the "
                             "comparison would take too long.")
    cluster = near_duplicate_clusters(pairs)
    items = sorted((Item(f.rel, -1 if scan.multi_label else label_of[f.label], f.split, digest, f.group,
                         cluster.get(f.rel), tuple(label_of[x] for x in f.labels) if scan.multi_label else ())
                    for f, digest in usable), key=lambda item: item.rel)
    warnings = list(scan.warnings)
    if scan.presplit:
        _check_presplit(classes, items)
        splits = [item.split or "train" for item in items]
        missing = [name for name in HOLDOUT_SPLITS if name not in scan.split_folders]
        if missing:
            splits = _held_out_from_train(items, splits, len(classes), config, missing)
            warnings.append(_taken_from_train_words(missing, config))
        warnings.extend(group_leak_warnings(items, splits))
    elif scan.multi_label:
        splits = assign_multilabel_splits(items, len(classes), config)
    else:
        splits, kept_in_train = assign_splits(items, len(classes), config)
        warnings.extend(single_group_warning(classes[c], items, c) for c in kept_in_train)
    samples = [Sample(item.rel, item.label, s, item.sha256, item.group, attributes[item.rel],
                      item.labels if scan.multi_label else None) for item, s in zip(items, splits, strict=True)]
    duplicates = find_duplicates(samples)
    warnings.extend(count_warnings(classes, samples, duplicates))
    near = near_duplicates_of(samples, pairs)
    crossing = sum(n.cross_split for n in near)
    if crossing:
        remedy = ("Move each pair into one folder." if scan.presplit else
                  "Tick 'keep near duplicates together' (or --group-near-duplicates) to keep each pair in one split.")
        warnings.append(f"{crossing} pairs of near-duplicate images (the same picture re-saved, resized or cropped, or "
                        "images that look almost alike) sit in different splits: the validation and test scores may "
                        f"be too optimistic. {remedy}")
    before = 0 if scan.presplit or not pairs or not config.group_near_duplicates else _twins_in_test(
        [replace(item, near=None) for item in items], pairs, len(classes), config, scan.multi_label)
    return DatasetIndex(root=scan.root, source=source, source_kind=scan.kind, classes=classes, samples=samples,
                        skipped=scan.skipped, duplicates=duplicates, warnings=warnings, near_duplicates=near,
                        near_twins_before_fix=before)


def _twins_in_test(items: list[Item], pairs: list[tuple[str, str, int]], n_classes: int,
                   config: SplitConfig, multi_label: bool = False) -> int:
    """How many test images a split that ignores near duplicates would give a near twin in training."""
    splits = (assign_multilabel_splits(items, n_classes, config) if multi_label
              else assign_splits(items, n_classes, config)[0])
    split_of = {item.rel: s for item, s in zip(items, splits, strict=True)}
    in_test = set()
    for a, b, _ in pairs:
        for x, y in ((a, b), (b, a)):
            if split_of.get(x) == "test" and split_of.get(y) == "train":
                in_test.add(x)
    return len(in_test)


def check_scanned(scan: Scan, progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> list[tuple[Found, str]]:
    """Decode and hash every file a scan found, as an import does (bad ones go to scan.skipped);
    (file, sha256) pairs of the usable ones."""
    return _validate(scan, progress, should_stop, {})


def _validate(scan: Scan, progress: Callable[[int, int], None] | None,
              should_stop: Callable[[], bool] | None, hashes: dict[str, np.ndarray | None],
              signatures: dict[str, np.ndarray] | None = None) -> list[tuple[Found, str]]:
    """Decode and hash every found file (its bytes, and its picture into `hashes`, its grey pixels into
    `signatures` for the near-duplicate check); bad ones go to scan.skipped. Returns (file, sha256) pairs."""
    total = len(scan.found)
    if progress:
        progress(0, total)
    usable: list[tuple[Found, str]] = []
    for done, found in enumerate(scan.found, start=1):
        if should_stop and should_stop():
            raise Cancelled()
        path = scan.root / found.rel
        try:
            with load_image(path) as image:   # decoded to prove it can be, and for its perceptual hashes
                hashes[found.rel] = image_hashes(image)
                if signatures is not None and hashes[found.rel] is not None:
                    signatures[found.rel] = pixel_signature(image)
            digest = file_sha256(path)
        except ImageLoadError as exc:
            scan.skipped.append(Skipped(found.rel, exc.reason))
        except OSError as exc:
            scan.skipped.append(Skipped(found.rel, f"cannot read the file ({exc.strerror or exc})"))
        else:
            group = found.group or hash_group(read_group_id(path))
            attributes = found.attributes or read_dicom_attributes(path)
            usable.append((Found(found.rel, found.label, found.split, group, attributes, found.labels), digest))
        if progress:
            progress(done, total)
    return usable


def _check_usable(source: Path, classes: list[str], scan: Scan, usable: list[tuple[Found, str]]) -> None:
    if not usable:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in scan.skipped[:SHOW])
        raise UserError(f"None of the images in {source.name} could be used: all {len(scan.skipped)} "
                        f"files were skipped (first: {reasons}).",
                        "Check that the files are real, complete images; re-export or re-copy them.")
    if len(classes) < 2:
        raise UserError(f"Only one class found in {source.name}: '{classes[0]}'.",
                        "A classifier needs at least two classes: add a folder (or labels) for another class.")
    per_class = Counter(found.label for found, _ in usable)
    small = [name for name in classes if per_class[name] < 2]
    joined = [name for name in small if ";" in name]
    if joined:
        raise UserError(f"{source.name} gives several labels per image, joined with ';' (such as {joined[0]!r}): "
                        f"each combination would be a class of its own, and {len(joined)} of them have fewer than "
                        "2 images.", "For several labels per image, name the column 'labels' (each image's labels "
                        "joined with ';'); otherwise give each image the one label that matters.")
    if small:
        listed = ", ".join(f"'{name}' ({per_class[name]})" for name in small)
        raise UserError(f"Some classes have fewer than 2 usable images: {listed}.",
                        "Add more images to those classes, remove them, or fix the skipped files "
                        "(run import-check to see why files were skipped).")


def _check_label_sets(source: Path, labels: list[str], scan: Scan, usable: list[tuple[Found, str]]) -> None:
    """A multi-label table needs usable images, two labels or more, and two images or more of each label."""
    if not usable:
        _check_usable(source, labels, scan, usable)
    if len(labels) < 2:
        raise UserError(f"{source.name} gives several labels per image but names only "
                        f"{'one label' if labels else 'no label'}{f': {labels[0]!r}' if labels else ''}.",
                        "A multi-label table needs two labels or more; for one finding, use a 'label' column with "
                        "the finding and its absence as two classes.")
    per_label = Counter(name for found, _ in usable for name in found.labels)
    small = [name for name in labels if per_label[name] < 2]
    if small:
        listed = ", ".join(f"'{name}' ({per_label[name]})" for name in small)
        raise UserError(f"Some labels are on fewer than 2 usable images: {listed}.",
                        "Add images that show those labels, remove the labels, or fix the skipped files "
                        "(run import-check to see why files were skipped).")


def _held_out_from_train(items: list[Item], splits: list[str], n_classes: int, config: SplitConfig,
                         missing: list[str]) -> list[str]:
    """The splits of a train/ (and test/ or val/) layout that lacks `missing` holdout folders: those images are
    taken from train/, each class's share as the split settings say, patients, copies (and near duplicates when
    asked) kept together as in any split; the other folders stay as they are."""
    in_train = [i for i, split in enumerate(splits) if split == "train"]
    shares = replace(config, val_fraction=config.val_fraction if "val" in missing else 0.0,
                     test_fraction=config.test_fraction if "test" in missing else 0.0)
    taken, _ = assign_splits([items[i] for i in in_train], n_classes, shares)
    result = list(splits)
    for i, split in zip(in_train, taken, strict=True):
        result[i] = split
    return result


def _taken_from_train_words(missing: list[str], config: SplitConfig) -> str:
    """What the import says when a train/ layout has no val/ (or test/) folder."""
    words = {"val": f"validation ({config.val_fraction:.0%} of each class)",
             "test": f"test ({config.test_fraction:.0%} of each class)"}
    folders = " or ".join(f"{name}/" for name in missing)
    return (f"There is no {folders} folder: the {' and '.join(words[name] for name in missing)} images are taken "
            "from train/ (patients and copies kept together); the other folders are used as they are.")


def _check_presplit(classes: list[str], items: list[Item]) -> None:
    in_train = {item.label for item in items if item.split == "train"}
    missing = [name for i, name in enumerate(classes) if i not in in_train]
    if missing:
        raise UserError(f"No usable training images for class {', '.join(repr(m) for m in missing)} in train/.",
                        "Every class needs images in train/<class>/; add some or remove the class.")

