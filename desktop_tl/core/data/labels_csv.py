"""A labels CSV written from an imported dataset with the expert's corrections: images relabelled or left
out, without moving or renaming a single file of the user's. The importer reads it back like any
`path,label` CSV (paths relative to the CSV's folder)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

from desktop_tl.core.atomic import atomic_write_text
from desktop_tl.core.data.index import DatasetIndex


def write_labels_csv(index: DatasetIndex, out: Path, relabel: Mapping[str, str] | None = None,
                     exclude: set[str] | frozenset[str] = frozenset()) -> int:
    """Write every sample of `index` as path,label (relabelled where `relabel` says; `exclude`d ones left out),
    with the subgroup attributes as further columns; the number of rows written."""
    relabel = relabel or {}
    names = index.attribute_names()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", *names])
    rows = 0
    for sample in index.samples:
        if sample.path in exclude:
            continue
        where = Path(os.path.relpath(index.root / sample.path, Path(out).resolve().parent)).as_posix()
        label = relabel.get(sample.path, index.classes[sample.label])
        writer.writerow([where, label, *[sample.attribute(n) or "" for n in names]])
        rows += 1
    atomic_write_text(Path(out), buffer.getvalue())
    return rows
