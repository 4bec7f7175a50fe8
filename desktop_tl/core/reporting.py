"""What the engine says to people, written once for both faces (the CLI prints it, the window logs it):
one sentence per training event, durations and sizes in words, and progress reports at a readable pace."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from desktop_tl.core.decision import held_out_name
from desktop_tl.core.events import BatchProgress, EpochEnd, Failed, Finished, Message, Planned, RunStarted, TrainEvent


def clock(seconds: float) -> str:
    """Elapsed or remaining time as on a stopwatch: 0:42, 12:05 or 1:02:03."""
    seconds = int(max(0.0, seconds)) if math.isfinite(seconds) else 0
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` and the noun, singular for one: "1 warning", "3 warnings", "2 sets of identical files"."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def duration(seconds: float) -> str:
    """A duration in words: 45 s, 3 min, 1 h 5 min."""
    seconds = max(0.0, float(seconds)) if math.isfinite(seconds) else 0.0
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def file_size(size_bytes: int) -> str:
    """The size of a file people carry around (a model): 850 KB, 13.5 MB."""
    if size_bytes >= 1_000_000:
        return f"{size_bytes / 1_000_000:.1f} MB"
    return f"{size_bytes / 1000:.0f} KB"


def binary_size(size: int) -> str:
    """Bytes in binary units, as disks and caches are measured: 512 B, 1.5 KiB, 20.0 GiB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, unit = float(size), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{size} B" if unit == 0 else f"{value:.1f} {units[unit]}"


def throttled(report: Callable[[int, int], None], interval_s: float) -> Callable[[int, int], None]:
    """`report(done, total)` at most once per `interval_s`, and always for the last item."""
    last = -math.inf

    def forward(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done >= total or now - last >= interval_s:
            last = now
            report(done, total)

    return forward


def describe(event: TrainEvent) -> str | None:
    """One line (the plan: a few) saying what happened; None for events people need not read."""
    if isinstance(event, RunStarted):
        where = "from the start" if event.start_epoch == 1 else f"resuming at epoch {event.start_epoch}"
        return (f"Training {event.train_images} images (validation {event.val_images}) on {event.device}, "
                f"{event.total_epochs} epochs, {where}; {event.trainable_params:,} of {event.total_params:,} "
                "parameters train.")
    if isinstance(event, Planned):
        return ("Continuing the plan:\n" if event.resumed else "Plan:\n") + "\n".join(event.lines)
    if isinstance(event, BatchProgress):
        figures = (f"loss {event.loss:.3f} acc {event.accuracy:.1%}" if event.phase in ("train", "refit", "member")
                   else "linear probe: computing features")
        refit = {"refit": "refit on train+val: ", "member": "another fine-tuned network: "}.get(event.phase, "")
        return (f"{refit}epoch {event.epoch}/{event.epochs} batch {event.batch}/{event.batches} {figures} "
                f"{event.images_per_sec:.1f} img/s ETA about {duration(event.eta_seconds)}")
    if isinstance(event, EpochEnd):
        stage = {"probe": " (linear probe)", "scratch": " (small network trained from scratch)"}.get(event.stage, "")
        return (f"Epoch {event.epoch}/{event.epochs}{stage}: train loss {event.train_loss:.3f}, accuracy "
                f"{event.train_accuracy:.1%} | validation loss {event.val_loss:.3f}, accuracy "
                f"{event.val_accuracy:.1%} | {event.seconds:.1f} s" + (" (best so far)" if event.is_best else ""))
    if isinstance(event, Message):
        return f"{'Warning' if event.level == 'warning' else 'Note'}: {event.text}"
    if isinstance(event, Finished):
        if event.stopped_by_user:
            return f"Stopped after {event.epochs_done} complete epoch(s); the last one is saved."
        if event.metrics is None:
            return f"This run had already finished ({event.epochs_done} epochs)."
        test = event.metrics.get("test") or {}
        accuracy = "" if not test.get("images") else (
            f", exact set of labels right on {test['exact_set_accuracy']['value']:.1%} of the test images"
            if "exact_set_accuracy" in test else f", test accuracy {test['accuracy']:.1%}")
        return f"Finished: best epoch {event.best_epoch}{accuracy}."
    if isinstance(event, Failed):
        return f"Error: {event.what}" + (f" What to do: {event.hint}" if event.hint else "")
    return None


def format_metrics(metrics: dict) -> str:
    """The metrics table printed at the end of a run and by `evaluate`."""
    if metrics.get("task") == "multi_label":
        return format_multilabel_metrics(metrics)
    lines = []
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        if not m.get("images"):
            lines.append(f"{split}: no images")
            continue
        low, high = m["accuracy_95ci"]
        auc = f"{m['roc_auc_ovr']:.3f}" if m.get("roc_auc_ovr") is not None else "n/a"
        baseline = (f" [always {m['majority_class']!r}: {m['majority_baseline']:.1%}]"
                    if m.get("majority_baseline") is not None else "")
        name = split if split == "test" else held_out_name(metrics.get("val_source", "validation"))
        lines.append(f"{name} ({m['images']} images): accuracy {m['accuracy']:.1%} (95% CI {low:.0%}-{high:.0%})"
                     f"{baseline}, balanced accuracy {m['balanced_accuracy']:.1%}, macro F1 {m['macro_f1']:.3f}, ROC AUC {auc}")
    for split in ("val", "test"):
        lines.extend(_probability_lines(split, metrics.get(split) or {}))
    lines.extend(status_lines(metrics))
    sets = metrics.get("prediction_sets") or {}
    for coverage, figures in (sets.get("test") or {}).items():
        if figures.get("images"):
            low, high = figures["coverage_ci95"]
            lines.append(f"prediction sets at {float(coverage):.0%} (test, {figures['images']} images): held the true "
                         f"class in {figures['coverage']:.1%} (95% CI {low:.0%}-{high:.0%}), "
                         f"{figures['mean_size']:.2f} classes on average")
    lines.extend(subgroup_lines(metrics))
    test = metrics.get("test") or {}
    if test.get("images"):
        lines.append(f"{'class':<24}{'precision':>10}{'recall':>10}{'f1':>8}{'support':>9}")
        for name, v in test["per_class"].items():
            recall = "n/a" if v["recall"] is None else f"{v['recall']:.2f}"
            f1 = "n/a" if v["f1"] is None else f"{v['f1']:.2f}"
            lines.append(f"{name[:23]:<24}{v['precision']:>10.2f}{recall:>10}{f1:>8}{v['support']:>9}")
    for note in metrics.get("cautions", []):
        lines.append(f"Caution: {note}")
    return "\n".join(lines)


def format_multilabel_metrics(metrics: dict) -> str:
    """A multi-label run's figures: per split the exact-set accuracy, macro and micro F1, then per label of the
    test split its AUC and, at its threshold, sensitivity, specificity, PPV and NPV with 95% intervals."""
    lines = []
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        if not m.get("images"):
            lines.append(f"{split}: no images")
            continue
        exact = m["exact_set_accuracy"]
        low, high = exact["ci95"]
        figure = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"{split} ({m['images']} images): exact set of labels right {exact['value']:.1%} (95% CI "
                     f"{low:.0%}-{high:.0%}), macro F1 {figure(m['macro_f1'])}, micro F1 {figure(m['micro_f1'])}, "
                     f"mean ROC AUC {figure(m['macro_auc'])}")
    test = metrics.get("test") or {}
    if test.get("images"):
        lines.append(f"{'label (test)':<20}{'images':>7}{'AUC':>7}{'threshold':>10}  sensitivity / specificity / PPV / NPV")
        for name, v in test["per_label"].items():
            auc = "n/a" if v["auc"] is None else f"{v['auc']:.3f}"
            rates = " / ".join(rate_text(v[key], 0) for key in ("sensitivity", "specificity", "ppv", "npv"))
            lines.append(f"{name[:19]:<20}{v['images']:>7}{auc:>7}{v['threshold']:>10.3f}  {rates}")
    for note in metrics.get("cautions", []):
        lines.append(f"Caution: {note}")
    return "\n".join(lines)


def rate_text(rate: dict[str, Any], decimals: int = 1) -> str:
    """One rate of an operating point (core.evaluation.operating_point) with its count and 95% interval:
    "94.1% (16/17; 95% CI 73%–99%)", or "n/a" when nothing was counted."""
    if rate.get("value") is None:
        return "n/a"
    low, high = rate["ci95"]
    return f"{rate['value']:.{decimals}%} ({rate['hits']}/{rate['of']}; 95% CI {low:.0%}–{high:.0%})"


OPERATING_RATES = (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("ppv", "PPV"), ("npv", "NPV"))


def operating_point_text(point: dict[str, Any], decimals: int = 1) -> str:
    """Sensitivity, specificity, PPV and NPV of an operating point, on one line (the CLI and the window)."""
    return ", ".join(f"{label} {rate_text(point[key], decimals)}" for key, label in OPERATING_RATES)


def _probability_lines(split: str, m: dict[str, Any]) -> list[str]:
    """The operating point of a two-class decision and the calibration error of one split."""
    lines = []
    point, decision = m.get("operating_point"), m.get("decision")
    if point and decision:
        lines.append(f"{split} at threshold {point['threshold']:.3f} for {decision['positive']!r}: "
                     f"{operating_point_text(point)}")
    if m.get("ece") is not None:
        lines.append(f"{split} calibration error (ECE): {m['ece']:.3f}")
    return lines


def _share_text(count: int, total: int, ci95: list[float] | None) -> str:
    interval = f"; 95% CI {ci95[0]:.0%}–{ci95[1]:.0%}" if ci95 else ""
    return f"{count / total:.1%} ({count}/{total}{interval})" if total else "n/a"


def status_figures(metrics: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Per split (validation, test): the share the model answers, the error among the answered and the share
    flagged unfamiliar, each with its count and 95% interval (the CLI, the report and the window). Without a
    referral rule every image is answered, and the error among them is the error over all."""
    referral, unfamiliar = metrics.get("referral") or {}, metrics.get("unfamiliar") or {}
    rows = []
    held_out = held_out_name(metrics.get("val_source", "validation"), short=True)
    for split, name in (("val", held_out), ("test", "test")):
        figures, overall = referral.get(split) or {}, metrics.get(split) or {}
        flagged = (unfamiliar.get("test") or {}) if split == "test" else {}
        if figures.get("images"):
            answered = _share_text(figures["answered"], figures["images"], figures.get("coverage_ci95"))
            error = (_share_text(figures["errors"], figures["answered"], figures.get("error_ci95"))
                     if figures.get("answered") else "n/a")
        elif overall.get("images"):
            low, high = overall["accuracy_95ci"]
            answered = "all (no referral rule)"
            error = f"{1 - overall['accuracy']:.1%} (95% CI {1 - high:.0%}–{1 - low:.0%})"
        else:
            continue
        found = (_share_text(flagged["flagged"], flagged["images"], flagged.get("ci95"))
                 if flagged.get("images") else "n/a")
        rows.append((name, answered, error, found))
    return rows


def status_lines(metrics: dict[str, Any]) -> list[str]:
    """The referral rule and the check for unfamiliar images, with their held-out and test figures."""
    referral, unfamiliar = metrics.get("referral") or {}, metrics.get("unfamiliar") or {}
    lines: list[str] = []
    if not referral and not unfamiliar:       # a run that answers every image (or made before the statuses)
        return lines
    if referral:
        lines.append(f"Referral: answer when the probability of the class given is at least "
                     f"{referral['threshold']:.3f} (target: at most {referral['target']:.0%} error among answered "
                     f"images, with {referral.get('confidence', 0.95):.0%} confidence).")
    if unfamiliar:
        lines.append(f"Unfamiliar images: flagged above score {unfamiliar['threshold']:.1f}, set to flag "
                     f"{unfamiliar['flagged_share']:.0%} of held-out images of the training kind.")
    for name, answered, error, found in status_figures(metrics):
        lines.append(f"{name}: answered {answered}; error among answered {error}"
                     + (f"; flagged unfamiliar {found}" if name == "test" and unfamiliar else ""))
    return lines


def subgroup_lines(metrics: dict[str, Any], only: str | None = None) -> list[str]:
    """The test figures per subgroup (all attributes, or `only` that one), one line per group."""
    lines = []
    for name, groups in ((metrics.get("subgroups") or {}).get("test") or {}).items():
        if only is not None and name != only:
            continue
        lines.append(f"test by {name}:")
        for value, row in groups.items():
            low, high = row["accuracy_95ci"]
            sensitivity = (f", sensitivity for {row['positive']!r} {row['sensitivity']:.0%} of {row['positives']}"
                           if row.get("sensitivity") is not None else "")
            lines.append(f"  {value[:30]:<30} {row['images']:>5} images, accuracy {row['accuracy']:.1%} "
                         f"({low:.0%}-{high:.0%}){sensitivity}")
    return lines
