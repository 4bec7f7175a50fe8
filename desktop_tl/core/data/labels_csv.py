"""A labels CSV written from an imported dataset with the expert's corrections: images relabelled or left
out, without moving or renaming a single file of the user's. The importer reads it back like any
`path,label` CSV (paths relative to the CSV's folder)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from desktop_tl.core.atomic import atomic_write_csv
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.data.scan import EXCLUDED_COLUMN


def write_labels_csv(index: DatasetIndex, out: Path, relabel: Mapping[str, str] | None = None,
                     exclude: Mapping[str, str] | None = None) -> int:
    """Write every sample of `index` as path,label (relabelled where `relabel` says), with the subgroup
    attributes as further columns; the images in `exclude` (path -> reason) keep their row with the reason in
    the `excluded` column, so an import leaves them out and lists them with the skipped files. Returns the
    number of images that stay in."""
    relabel, exclude = relabel or {}, exclude or {}
    names = index.attribute_names()
    rows = [["path", "label", *names, *([EXCLUDED_COLUMN] if exclude else [])]]
    for sample in index.samples:
        where = Path(os.path.relpath(index.root / sample.path, Path(out).resolve().parent)).as_posix()
        label = relabel.get(sample.path, index.classes[sample.label])
        reason = [exclude.get(sample.path, "")] if exclude else []
        rows.append([where, label, *[sample.attribute(n) or "" for n in names], *reason])
    atomic_write_csv(Path(out), rows)
    return sum(sample.path not in exclude for sample in index.samples)
