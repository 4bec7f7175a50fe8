"""The imported dataset: its samples with their split, what was left out, and what the samples show
(identical files, imbalance, missing validation images). Written to and read from a run's dataset.json
with relative paths only. Patient groups are kept in memory as salted hashes; a run's dataset.json keeps only
which images share a patient, as small numbers in order of first appearance ("unit"), so that the folds of
cross-validation keep a patient together after a restart without any identifier being written."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from desktop_tl.core.data import label_sets
from desktop_tl.core.errors import UserError

SPLITS = ("train", "val", "test")
HOLDOUT_SPLITS = ("val", "test")
FEW_IMAGES = 10
IMBALANCE_RATIO = 3.0

@dataclass(frozen=True)
class Sample:
    """One usable image."""

    path: str  # POSIX path relative to the dataset root
    label: int  # index into DatasetIndex.classes; -1 in a multi-label dataset, whose samples carry `labels`
    split: str  # "train" | "val" | "test"
    sha256: str
    group: str | None = None  # salted hash of patient/group id (in memory), or "unit:N" read from dataset.json
    attributes: tuple[tuple[str, str], ...] = ()   # subgroups: extra CSV columns, non-identifying DICOM tags
    labels: tuple[int, ...] | None = None   # multi-label: the indices of the labels it shows (() for none)

    def attribute(self, name: str) -> str | None:
        """The value of one subgroup attribute ("site", "Modality", ...), or None."""
        return dict(self.attributes).get(name)


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


@dataclass(frozen=True)
class NearDuplicate:
    """Two images that show the same picture (re-saved, resized, re-windowed or cropped slightly)."""

    paths: tuple[str, str]
    distance: int          # bits between their closest perceptual hashes (see data.near_duplicates)
    cross_split: bool      # True when they sit in different splits (a leak)


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
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    near_twins_before_fix: int = 0   # test images a split ignoring near duplicates would give a twin in training
    confirmed: int = 0   # images joined to training from label assist's confirmed labels (data.confirmed)

    @property
    def multi_label(self) -> bool:
        """True when each image has a set of labels (core.data.label_sets) rather than one class."""
        return any(s.labels is not None for s in self.samples)

    def split(self, name: str) -> list[Sample]:
        """The samples of split `name` ("train", "val" or "test")."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class and split: {class: {"train": n, "val": n, "test": n}}."""
        table = {name: dict.fromkeys(SPLITS, 0) for name in self.classes}
        for sample in self.samples:
            for label in (sample.label,) if sample.labels is None else sample.labels:
                table[self.classes[label]][sample.split] += 1
        return table

    def abs_path(self, sample: Sample) -> Path:
        """Where the sample's file is on this machine."""
        return self.root / sample.path

    def attribute_names(self) -> list[str]:
        """The subgroup attributes the samples carry (CSV columns, DICOM tags), sorted."""
        return sorted({name for sample in self.samples for name, _ in sample.attributes})

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
            "near_duplicates": [{"paths": list(n.paths), "distance": n.distance, "cross_split": n.cross_split}
                                for n in self.near_duplicates],
            "near_twins_before_fix": self.near_twins_before_fix,
        } | ({"label_sets": label_sets.summary(self.classes, self.samples)} if self.multi_label else {})

    def to_json(self, relative_source: str) -> dict[str, Any]:
        """The index for a run folder; `relative_source` is the source relative to that folder."""
        if PurePosixPath(relative_source).is_absolute() or PureWindowsPath(relative_source).is_absolute():
            raise ValueError("to_json needs the source as a relative path")
        units: dict[str, int] = {}
        for sample in self.samples:
            if sample.group is not None:
                units.setdefault(sample.group, len(units))
        return {
            "source": relative_source,
            "source_kind": self.source_kind,
            "classes": list(self.classes),
            "samples": [{"path": s.path, "label": s.label, "split": s.split, "sha256": s.sha256}
                        | ({"labels": list(s.labels)} if s.labels is not None else {})
                        | ({"unit": units[s.group]} if s.group is not None else {})
                        | ({"attributes": dict(s.attributes)} if s.attributes else {}) for s in self.samples],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "near_duplicates": [{"paths": list(n.paths), "distance": n.distance} for n in self.near_duplicates],
            "near_twins_before_fix": self.near_twins_before_fix,
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
        duplicates = find_duplicates(samples)
        near = near_duplicates_of(samples, [_near_from_json(item) for item in data.get("near_duplicates") or []])
        before = data.get("near_twins_before_fix", 0)
        if len({s.labels is None for s in samples}) > 1:
            raise _damaged("some samples have label sets and others do not")
        return cls(root=root, source=source, source_kind=kind, classes=list(classes), samples=samples,
                   skipped=skipped, duplicates=duplicates, warnings=count_warnings(classes, samples, duplicates),
                   near_duplicates=near, near_twins_before_fix=before if isinstance(before, int) else 0)


def format_report(index: DatasetIndex) -> str:
    """A plain-text summary for the terminal (`desktop-tl import-check`)."""
    counts = index.counts()
    width = max([len("class")] + [len(name) for name in index.classes])
    kind = "class folders" if index.source_kind == "folder" else "CSV file"
    what = "labels" if index.multi_label else "classes"
    lines = [
        f"Dataset: {index.source.name} ({kind})",
        f"{len(index.classes)} {what}, {len(index.samples)} usable images, "
        f"{len(index.skipped)} skipped, {len(index.duplicates)} sets of identical files",
        "",
    ]
    if index.multi_label:
        lines += label_sets.summary_lines(index.classes, index.samples)
        lines += ["", f"  {'images':<{width}}  {'train':>6}  {'val':>6}  {'test':>6}  {'total':>6}"]
    else:
        lines.append(f"  {'class':<{width}}  {'train':>6}  {'val':>6}  {'test':>6}  {'total':>6}")
        for name in index.classes:
            row = counts[name]
            lines.append(f"  {name:<{width}}  {row['train']:>6}  {row['val']:>6}  {row['test']:>6}  "
                         f"{sum(row.values()):>6}")
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
    lines += near_duplicate_lines(index)
    if index.warnings:
        lines += ["", "Warnings:"]
        lines += [f"  - {w}" for w in index.warnings]
    return "\n".join(lines)


LOOK_ALIKE_SHARE = 0.1   # more near-duplicate pairs than this share of the images: a set of look-alikes


def look_alikes(index: DatasetIndex) -> bool:
    """True when the near-duplicate pairs are too many to be copies: the images of the set look alike."""
    return len(index.near_duplicates) > LOOK_ALIKE_SHARE * max(len(index.samples), 1)


def near_duplicate_lines(index: DatasetIndex, shown: int = 20) -> list[str]:
    """The near-duplicate pairs in words (those crossing splits first), for the terminal and the window."""
    if not index.near_duplicates:
        return []
    pairs = sorted(index.near_duplicates, key=lambda n: not n.cross_split)
    crossing = sum(n.cross_split for n in pairs)
    lines = ["", f"Near duplicates (the same picture re-saved, resized or cropped): {len(pairs)} pairs, "
                 f"{crossing} across splits."]
    if look_alikes(index):
        lines.append(f"  That is many for {len(index.samples)} images: the pictures of this dataset look alike, so "
                     "these pairs are mostly look-alikes rather than copies (the check cannot tell them apart here).")
    if index.near_twins_before_fix:
        lines.append(f"  Each pair was kept in one split; a split ignoring them would have given "
                     f"{index.near_twins_before_fix} test images a near twin in training.")
    lines += [f"  {a} ~ {b}{'  (different splits)' if n.cross_split else ''}" for n in pairs[:shown]
              for a, b in [n.paths]]
    if len(pairs) > shown:
        lines.append(f"  ... and {len(pairs) - shown} more")
    return lines


def find_duplicates(samples: list[Sample]) -> list[DuplicateSet]:
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_hash[sample.sha256].append(sample)
    return [DuplicateSet(sha, [s.path for s in copies], len({s.split for s in copies}) > 1)
            for sha, copies in sorted(by_hash.items(), key=lambda kv: kv[1][0].path) if len(copies) > 1]


def count_warnings(classes: list[str], samples: list[Sample], duplicates: list[DuplicateSet]) -> list[str]:
    """Warnings that follow from the samples alone: imbalance, small classes, leaks (for a multi-label dataset,
    those of its label sets: core.data.label_sets)."""
    if any(s.labels is not None for s in samples):
        return label_sets.label_set_warnings(classes, samples, duplicates)
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
    labels = item.get("labels")
    if labels is not None and (not isinstance(labels, list) or label != -1 or len(set(labels)) != len(labels) or any(
            not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < n_classes for k in labels)):
        raise _damaged(f"sample {path!r} has labels {labels!r}, expected different numbers 0..{n_classes - 1}")
    if labels is None and (not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n_classes):
        raise _damaged(f"sample {path!r} has label {label!r}, expected 0..{n_classes - 1}")
    if split not in SPLITS:
        raise _damaged(f"sample {path!r} has split {split!r}, expected one of {', '.join(SPLITS)}")
    if not isinstance(sha, str) or not sha:
        raise _damaged(f"sample {path!r} has no sha256")
    attributes = item.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in attributes.items()):
        raise _damaged(f"sample {path!r} has attributes that are not names and values")
    unit = item.get("unit")
    if unit is not None and (not isinstance(unit, int) or isinstance(unit, bool) or unit < 0):
        raise _damaged(f"sample {path!r} has a patient unit {unit!r} that is not a whole number")
    return Sample(path, label, split, sha, None if unit is None else f"unit:{unit}",
                  tuple(sorted(attributes.items())), None if labels is None else tuple(sorted(labels)))


def near_duplicates_of(samples: list[Sample], pairs: list[tuple[str, str, int]]) -> list[NearDuplicate]:
    """The near-duplicate pairs among these samples, each marked when it crosses splits."""
    split_of = {s.path: s.split for s in samples}
    return [NearDuplicate((a, b), d, split_of[a] != split_of[b]) for a, b, d in pairs
            if a in split_of and b in split_of]


def _near_from_json(item: Any) -> tuple[str, str, int]:
    if not isinstance(item, dict) or not isinstance(item.get("paths"), list) or len(item["paths"]) != 2 \
            or not all(isinstance(p, str) for p in item["paths"]) or not isinstance(item.get("distance"), int):
        raise _damaged("a near-duplicate entry needs two paths and a distance")
    return item["paths"][0], item["paths"][1], item["distance"]


def _skipped_from_json(item: Any) -> Skipped:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("reason"), str):
        raise _damaged("a skipped entry needs a path and a reason")
    return Skipped(item["path"], item["reason"])
