"""How an imported dataset reads in the Dataset panel: the class table's rows and model, the duplicates and
warnings in words, and whether the source fixed the splits."""

from __future__ import annotations

from dataclasses import dataclass

from desktop_tl.core.data.index import DatasetIndex, near_duplicate_lines
from desktop_tl.core.data.label_sets import findings_lines
from desktop_tl.gui.widgets.item_models import Column, RecordTableModel


@dataclass(frozen=True)
class ClassRow:
    """One class of the class table."""

    name: str
    train: int
    val: int
    test: int
    largest: int

    @property
    def total(self) -> int:
        """Images of the class in all splits."""
        return self.train + self.val + self.test

    @property
    def share_of_largest(self) -> float:
        """Size relative to the largest class (1.0 for the largest)."""
        return self.total / self.largest if self.largest else 0.0


def class_rows(index: DatasetIndex) -> list[ClassRow]:
    """Class table rows of an index."""
    counts = index.counts()
    largest = max((sum(c.values()) for c in counts.values()), default=0)
    return [ClassRow(name, counts[name]["train"], counts[name]["val"], counts[name]["test"], largest)
            for name in index.classes]


def class_table_model(parent=None) -> RecordTableModel[ClassRow]:
    """Class, train/val/test counts, total, and a bar of the size relative to the largest class."""
    return RecordTableModel([
        Column("Class", lambda r: r.name),
        Column("Train", lambda r: r.train, align_right=True),
        Column("Val", lambda r: r.val, align_right=True),
        Column("Test", lambda r: r.test, align_right=True),
        Column("Total", lambda r: r.total, align_right=True),
        Column("Size vs largest class", lambda r: r.share_of_largest, text=lambda v: f"{v:.0%}",
               bar=lambda r: r.share_of_largest,
               tooltip=lambda r: f"{r.name!r} has {r.total} of the largest class's {r.largest} images"),
    ], parent)


def findings_text(index: DatasetIndex) -> str:
    """Duplicates and warnings in plain language, one paragraph each."""
    lines = []
    if index.multi_label:
        first, *rest = findings_lines(index.classes, index.samples)
        lines += [f"• {first}", *(line for line in rest if line)]
    for dup in index.duplicates:
        where = "in different splits (a leak between training and evaluation)" if dup.cross_split else "in one split"
        lines.append(f"• {len(dup.paths)} identical files {where}: {', '.join(dup.paths)}")
    lines += [f"• {w}" for w in index.warnings]
    near = near_duplicate_lines(index)
    if near:
        lines += [f"• {near[1]}"] + near[2:]
    return "\n".join(lines) if lines else "No duplicates, no warnings."


def fixed_splits(index: DatasetIndex) -> bool:
    """True when the source fixed the splits (train/ and val/ folders), so split settings do not apply."""
    return index.source_kind == "folder" and (index.source / "train").is_dir() and any(
        (index.source / name).is_dir() for name in ("val", "valid", "validation"))
