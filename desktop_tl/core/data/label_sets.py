"""Several labels per image (multi-label): the two CSV forms that give them, and what a dataset's label sets
show (images per label and split, how often labels occur together, images with none of the labels).

A CSV gives label sets in a `labels` column, the labels of an image joined with ';' (an empty cell: none of
them), or in one column of 0 and 1 per label with no label column. Folders cannot: an image sits in one folder.
No torch, no Qt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

LABELS_HEADERS = frozenset({"labels", "findings", "tags"})
SEPARATOR = ";"
FLAG_VALUES = frozenset({"0", "1"})
FEW_IMAGES = 10          # under this many images with a label, its figures are unreliable
SHOWN_PAIRS = 10


def parse_label_cell(text: str) -> tuple[str, ...]:
    """The labels of one `labels` cell: split on ';', stripped, each once, sorted; () for an empty cell."""
    return tuple(sorted({part.strip() for part in text.split(SEPARATOR) if part.strip()}))


def flag_columns(candidates: Sequence[tuple[int, str]],
                 rows: Sequence[tuple[int, Sequence[str]]]) -> list[tuple[int, str]]:
    """The candidate columns (index, name) whose every value is 0 or 1: one column per label."""
    return [(col, name) for col, name in candidates
            if rows and {(row[col].strip() if col < len(row) else "") for _, row in rows} <= FLAG_VALUES]


def labels_from_flags(row: Sequence[str], flags: Sequence[tuple[int, str]]) -> tuple[str, ...]:
    """The labels whose column holds 1 in this row, sorted."""
    return tuple(sorted(name for col, name in flags if col < len(row) and row[col].strip() == "1"))


def label_counts(classes: Sequence[str], sets: Sequence[tuple[int, ...]]) -> dict[str, int]:
    """Images per label."""
    counts = Counter(k for labels in sets for k in labels)
    return {name: counts[k] for k, name in enumerate(classes)}


def co_occurrence(classes: Sequence[str], sets: Sequence[tuple[int, ...]]) -> list[tuple[str, str, int]]:
    """Pairs of labels that occur on the same image, with how many images show both, most frequent first."""
    pairs = Counter(pair for labels in sets for pair in combinations(sorted(labels), 2))
    return [(classes[a], classes[b], n) for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))]


def summary(classes: Sequence[str], samples: Sequence[Any]) -> dict[str, Any]:
    """What the label sets of `samples` (core.data.index.Sample with `labels`) show, JSON-safe: images per
    label and split, images with no label, labels per image, and the pairs that occur together."""
    per_split: dict[str, dict[str, int]] = {name: {"train": 0, "val": 0, "test": 0} for name in classes}
    for sample in samples:
        for k in sample.labels:
            per_split[classes[k]][sample.split] += 1
    sets = [sample.labels for sample in samples]
    return {"labels": [{"name": name, **per_split[name], "total": sum(per_split[name].values())} for name in classes],
            "no_label": sum(1 for labels in sets if not labels),
            "mean_labels_per_image": round(sum(map(len, sets)) / max(1, len(sets)), 3),
            "together": [{"labels": [a, b], "images": n} for a, b, n in co_occurrence(classes, sets)]}


def summary_lines(classes: Sequence[str], samples: Sequence[Any]) -> list[str]:
    """The label sets in words, with a table of images per label and split, for the terminal (`desktop-tl
    import-check`)."""
    report = summary(classes, samples)
    width = max([len("label")] + [len(name) for name in classes])
    lines = [f"  {'label':<{width}}  {'train':>6}  {'val':>6}  {'test':>6}  {'total':>6}"]
    lines += [f"  {row['name']:<{width}}  {row['train']:>6}  {row['val']:>6}  {row['test']:>6}  {row['total']:>6}"
              for row in report["labels"]]
    first, *rest = findings_lines(classes, samples, report)
    return [first, "", *lines, *rest]


def findings_lines(classes: Sequence[str], samples: Sequence[Any], report: dict[str, Any] | None = None) -> list[str]:
    """What the label sets show beyond the counts per label (the window's class table has those): labels per
    image, images with none, and the labels that occur together (from `report`, their `summary`, when given)."""
    report = report or summary(classes, samples)
    none = report["no_label"]
    lines = [f"Several labels per image: {len(classes)} labels, {report['mean_labels_per_image']:.2f} per image on "
             "average; " + (f"{none} image{'s' * (none != 1)} with none of the labels." if none else
                            "every image has at least one label.")]
    together = report["together"]
    if together:
        lines += ["", "Labels that occur together (images with both):"]
        lines += [f"  {row['labels'][0]} + {row['labels'][1]}: {row['images']}" for row in together[:SHOWN_PAIRS]]
        if len(together) > SHOWN_PAIRS:
            lines.append(f"  ... and {len(together) - SHOWN_PAIRS} more pairs")
    else:
        lines += ["", "No two labels occur on the same image."]
    return lines


def label_set_warnings(classes: Sequence[str], samples: Sequence[Any], duplicates: Sequence[Any]) -> list[str]:
    """Warnings that follow from the label sets alone: rare labels, labels validation cannot measure, images
    with no label at all, and identical files given different label sets."""
    warnings = []
    counts = label_counts(classes, [s.labels for s in samples])
    few = [f"'{name}' ({n})" for name, n in counts.items() if n < FEW_IMAGES]
    if few:
        warnings.append(f"Few images show {', '.join(few)}: under {FEW_IMAGES} images per label, that label's "
                        "figures will be unreliable.")
    in_val = {k for s in samples if s.split == "val" for k in s.labels}
    unmeasured = [f"'{name}'" for k, name in enumerate(classes) if k not in in_val]
    if unmeasured and any(s.split == "val" for s in samples):
        warnings.append(f"No validation image shows {', '.join(unmeasured)}, so validation cannot measure "
                        "those labels.")
    none = sum(1 for s in samples if not s.labels)
    if none:
        warnings.append(f"{none} image{'s' * (none != 1)} show{'s' * (none == 1)} none of the labels: they teach "
                        "the model what 'none of these' looks like.")
    labels_of = {s.path: s.labels for s in samples}
    differing = [d for d in duplicates if len({labels_of[p] for p in d.paths}) > 1]
    if differing:
        warnings.append(f"{len(differing)} identical files carry different label sets "
                        f"(e.g. {' = '.join(differing[0].paths)}). Keep one copy with the right labels.")
    cross = [d for d in duplicates if d.cross_split]
    if cross:
        warnings.append(f"{len(cross)} identical files sit in different splits (e.g. {' = '.join(cross[0].paths)}); "
                        "the validation score may be too optimistic. Remove the copies.")
    return warnings
