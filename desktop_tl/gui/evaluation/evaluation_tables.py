"""The evaluation panel's text and tables: the summary line of a split, the per-class rows and the gallery's
mistake items, from a metrics dict (metrics.json)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_tl.core.decision import rule_text
from desktop_tl.core.reporting import counted
from desktop_tl.gui.widgets.item_models import Column, ImageItem, RecordTableModel, fmt_number, fmt_percent


def summary_text(split_name: str, m: dict[str, Any] | None) -> str:
    """Images, accuracy with its 95% interval and the score of always answering the largest class, balanced
    accuracy, macro F1, ROC AUC, and the decision rule
    when the run chose a threshold."""
    if not m or not m.get("images"):
        return f"No {split_name.lower()} images were evaluated."
    if "exact_set_accuracy" in m:        # a multi-label run (core.evaluation.multilabel)
        exact = m["exact_set_accuracy"]
        low, high = exact["ci95"]
        aucs = ", ".join(f"{name} {fmt_number(row['auc'], 3)}" for name, row in m["per_label"].items())
        return (f"{split_name}: {counted(m['images'], 'image')}, several labels per image. Exact set of labels right "
                f"{fmt_percent(exact['value'])} (95% interval {fmt_percent(low)}–{fmt_percent(high)}); macro F1 "
                f"{fmt_number(m.get('macro_f1'), 3)}; micro F1 {fmt_number(m.get('micro_f1'), 3)}; ROC AUC per label: "
                f"{aucs}. Every label's sensitivity, specificity, PPV and NPV at its threshold: Report…, or "
                "`desktop-tl evaluate RUN`.")
    low, high = m.get("accuracy_95ci") or (None, None)
    interval = f" (95% interval {fmt_percent(low)}–{fmt_percent(high)})" if low is not None else ""
    if m.get("majority_baseline") is not None:
        interval += f"; always answering {m['majority_class']!r} would score {fmt_percent(m['majority_baseline'])}"
    decision = m.get("decision")
    rule = f" Decision: {rule_text(**decision)}." if isinstance(decision, dict) and "threshold" in decision else ""
    return (f"{split_name}: {counted(m['images'], 'image')}. Accuracy {fmt_percent(m.get('accuracy'))}{interval}; "
            f"balanced accuracy {fmt_percent(m.get('balanced_accuracy'))}; "
            f"macro F1 {fmt_number(m.get('macro_f1'), 3)}; ROC AUC {fmt_number(m.get('roc_auc_ovr'), 3)}.{rule}")


@dataclass(frozen=True)
class ClassMetrics:
    """One row of the per-class table."""

    name: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int
    roc_auc: float | None


def per_class_rows(m: dict[str, Any], classes: list[str]) -> list[ClassMetrics]:
    """Per-class figures in class order (for a multi-label run, per label: PPV as precision, sensitivity as recall,
    at the label's threshold)."""
    if "per_label" in m:
        return [ClassMetrics(c, row["ppv"]["value"], row["sensitivity"]["value"], row["f1"], row["images"], row["auc"])
                for c, row in m["per_label"].items()]
    table = m.get("per_class") or {}
    return [ClassMetrics(c, table[c].get("precision"), table[c].get("recall"), table[c].get("f1"),
                         int(table[c].get("support") or 0), table[c].get("roc_auc"))
            for c in classes if c in table]


def per_class_model(parent=None) -> RecordTableModel[ClassMetrics]:
    """Class, precision, recall, F1, support (test images of the class), ROC AUC."""
    return RecordTableModel([
        Column("Class", lambda r: r.name),
        Column("Precision", lambda r: r.precision, text=fmt_percent, align_right=True,
               tooltip=lambda r: f"Of the images predicted {r.name!r}, the share that really are."),
        Column("Recall", lambda r: r.recall, text=fmt_percent, align_right=True,
               tooltip=lambda r: f"Of the real {r.name!r} images, the share found."),
        Column("F1", lambda r: r.f1, text=fmt_number, align_right=True),
        Column("Images", lambda r: r.support, align_right=True),
        Column("ROC AUC", lambda r: r.roc_auc, text=fmt_number, align_right=True),
    ], parent)


def mistake_item(root: Path | None, mistake: dict[str, Any], heatmap: Any = None) -> ImageItem:
    """A gallery item for one entry of `misclassified`; with `heatmap` (a PIL image from the exported model),
    that is shown instead of the plain thumbnail."""
    path = (root / mistake["path"]) if root is not None else Path(mistake["path"])
    top = sorted(mistake.get("probabilities", {}).items(), key=lambda kv: kv[1], reverse=True)[:3]
    odds = ", ".join(f"{c} {p:.0%}" for c, p in top)
    return ImageItem(path, f"{mistake['true']} → {mistake['predicted']} {mistake['probability']:.0%}\n{path.name}",
                     f"{mistake['path']}\ntrue: {mistake['true']}, predicted: {mistake['predicted']} "
                     f"({mistake['probability']:.1%})\n{odds}"
                     + ("\nColours: where the exported model looked (red: most)." if heatmap is not None else ""),
                     heatmap)


def all_mistakes_note(m: dict[str, Any]) -> str:
    """The gallery's note over every stored mistake of a split's metrics: how many there are and how many are
    stored; empty before any figures."""
    stored = len(m.get("misclassified") or [])
    total = m["wrong_sets"] if "wrong_sets" in m else sum(
        row[c] for row_index, row in enumerate(m.get("confusion_matrix") or []) for c in range(len(row)) if c != row_index)
    if not m.get("images"):
        return ""
    if not total:
        return "No mistakes in this split."
    shown = f" (the first {stored} are stored)" if stored < total else ""
    if "wrong_sets" in m:
        every = "The 1 image" if total == 1 else f"All {total} images"
        return f"{every} whose set of labels is not exactly right{shown}."
    every = "The 1 misclassified image" if total == 1 else f"All {total} misclassified images"
    return f"{every}{shown}. Click a matrix cell to see one pair."


def cell_mistakes(m: dict[str, Any], classes: list[str], true_row: int,
                  predicted_column: int) -> tuple[list[dict[str, Any]], str]:
    """The stored mistakes of one (true, predicted) cell of the confusion matrix, and the gallery's note."""
    true, predicted = classes[true_row], classes[predicted_column]
    count = m["confusion_matrix"][true_row][predicted_column]
    if true_row == predicted_column:
        return [], (f"{count} {true!r} images were classified correctly. Only mistakes are stored with the "
                    "results, so they are not shown here.")
    mistakes = [x for x in m.get("misclassified") or [] if x["true"] == true and x["predicted"] == predicted]
    extra = f" ({len(mistakes)} stored)" if len(mistakes) < count else ""
    return mistakes, f"{count} {true!r} images predicted as {predicted!r}{extra}."
