"""A silent trial's report from its watch log (the engine of `desktop-tl monitor`; numpy only).

- The chain: whether the log is intact (`core.audit_log.verify_log`).
- Counts over time: per window (a UTC day, or a number of consecutive images), by label and by status.
- Drift, two statistics per window, both carried by the model's check for unfamiliar images (the log's start
  entry holds it): the share of images flagged unfamiliar, against the share the check flags on held-out
  images of the training kind (an alarm when the window's Wilson interval lies wholly above it); and the
  typicality, the mean over the window of each image's share of held-out scores at or above its own
  (`Familiarity.typicality`), 1/2 for images of the training kind: an alarm when it falls more than
  TYPICALITY_Z standard errors below 1/2. The second sees a shift (a scanner's contrast, a protocol) while most
  images still pass the threshold.
- With the true labels (a CSV of path or sha256, and label): the realised accuracy, per-class sensitivity,
  and for two classes sensitivity, specificity, PPV and NPV at the model's operating point, each with a 95%
  Wilson interval beside the figure the model's held-out split promised (its counts travel in the model's
  metadata, `core.deploy.promise`), and a plain sentence when a realised figure falls below the promised
  interval. Calibration with them: the mean confidence against the realised accuracy, and the ECE.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from desktop_tl.core.audit_log import Verification, read_entries, verify_log
from desktop_tl.core.decision import Familiarity
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.calibration import expected_calibration_error
from desktop_tl.core.evaluation.intervals import confusion_rates, rate
from desktop_tl.core.reporting import counted
from desktop_tl.core.stored_scores import outcome_counts

STATUSES = ("answered", "uncertain", "unfamiliar")
TYPICALITY_Z = 3.09        # one-sided 0.1% per window for images of the training kind
FIGURE_WORDS = {"accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
                "ppv": "positive predictive value", "npv": "negative predictive value"}


def _windows(images: list[dict[str, Any]], window: str | int) -> list[tuple[str, list[dict[str, Any]]]]:
    if isinstance(window, int):
        return [(f"images {start + 1}-{min(start + window, len(images))}", images[start:start + window])
                for start in range(0, len(images), window)]
    days: dict[str, list[dict[str, Any]]] = {}
    for entry in images:
        days.setdefault(str(entry.get("time", ""))[:10] or "unknown", []).append(entry)
    return sorted(days.items())


def typicality(members: list[dict[str, Any]], familiarity: Familiarity | None) -> dict[str, Any] | None:
    """The window's mean typicality with the lowest mean images of the training kind reach by chance (at
    TYPICALITY_Z standard errors), and whether it fell below; None without scores or percentiles."""
    if familiarity is None or not familiarity.score_percentiles:
        return None
    values = [familiarity.typicality(float(e["unfamiliarity"])) for e in members
              if isinstance(e.get("unfamiliarity"), (int, float))]
    if not values:
        return None
    m = len(familiarity.score_percentiles)
    sd = math.sqrt(((m + 1) ** 2 - 1) / (12 * m * m) / len(values))    # of the mean of uniform {0, 1/m, ..., 1}
    mean, lowest = float(np.mean(values)), 0.5 - TYPICALITY_Z * sd
    return {"mean": mean, "images": len(values), "lowest_by_chance": lowest, "alarm": mean < lowest}


def counts_over_time(images: list[dict[str, Any]], window: str | int = "day",
                     familiarity: Familiarity | None = None) -> list[dict[str, Any]]:
    """Per window: images, by label, by status, the unfamiliar share with its interval and the typicality, and
    whether either raised the drift alarm (see the module docstring)."""
    share = familiarity.flagged_share if familiarity is not None else None
    rows = []
    for name, members in _windows(images, window):
        statuses = Counter(str(e.get("status")) for e in members)
        unfamiliar = rate(statuses.get("unfamiliar", 0), len(members))
        share_alarm = bool(share is not None and unfamiliar["ci95"] and unfamiliar["ci95"][0] > share)
        typical = typicality(members, familiarity)
        rows.append({"window": name, "images": len(members),
                     "labels": dict(sorted(Counter(str(e.get("label")) for e in members).items())),
                     "statuses": {s: statuses.get(s, 0) for s in STATUSES},
                     "unfamiliar": unfamiliar, "typicality": typical,
                     "drift_alarm": share_alarm or bool(typical and typical["alarm"])})
    return rows


def read_truth(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """True labels by relative path and by sha256, from a CSV with a `label` column and a `path` and/or a
    `sha256` column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"Cannot read the truth file {Path(path).name}: {exc}.",
                        "Give a CSV with a header: path,label (or sha256,label).") from exc
    if not rows or "label" not in rows[0] or not ({"path", "sha256"} & set(rows[0])):
        raise UserError(f"{Path(path).name} needs a header with a label column and a path or sha256 column.",
                        "Write it as path,label with paths relative to the watched folder, as the log has them.")
    by_path = {r["path"].strip().replace("\\", "/"): r["label"].strip() for r in rows if (r.get("path") or "").strip()}
    by_sha = {r["sha256"].strip().lower(): r["label"].strip() for r in rows if (r.get("sha256") or "").strip()}
    return by_path, by_sha


def figures_from_counts(counts: dict[str, Any]) -> dict[str, Any]:
    """Rates with intervals from counts: images, correct, per class (found, of), and tp/fn/fp/tn for two
    classes (the form `core.deploy.promise.held_out_counts` writes)."""
    figures: dict[str, Any] = {"images": counts["images"], "accuracy": rate(counts["correct"], counts["images"]),
                               "sensitivity_per_class": {c: rate(*found) for c, found in counts["per_class"].items()}}
    if "tp" in counts:
        tp, fn, fp, tn = (counts[k] for k in ("tp", "fn", "fp", "tn"))
        figures.update(positive=counts["positive"], **confusion_rates(tp, fn, fp, tn))
    return figures


def realised_counts(cases: list[tuple[dict[str, Any], str]], classes: list[str],
                    positive: str | None) -> dict[str, Any]:
    """Counts in the form of `held_out_counts` from (entry, true label) pairs: every case with its logged label,
    whatever its status (the model's answer, as the promise counted it)."""
    return outcome_counts([classes.index(t) for _, t in cases], [classes.index(e["label"]) for e, _ in cases],
                          classes, positive)


def figure_pairs(realised: dict[str, Any], promised: dict[str, Any] | None
                 ) -> list[tuple[str, str | None, dict[str, Any], dict[str, Any] | None]]:
    """(figure, class for a per-class sensitivity else None, realised, promised or None) for every realised
    figure: overall ones first, then each class's sensitivity."""
    promised = promised or {}
    pairs = [(n, None, realised[n], promised.get(n)) for n in FIGURE_WORDS if n in realised]
    return pairs + [("sensitivity", c, r, (promised.get("sensitivity_per_class") or {}).get(c))
                    for c, r in realised["sensitivity_per_class"].items()]


def _shortfalls(realised: dict[str, Any], promised: dict[str, Any], split: str) -> list[str]:
    """A sentence for each realised figure below the interval the promise gave."""
    lines = []
    for name, cls, now, then in figure_pairs(realised, promised):
        words = FIGURE_WORDS[name] if cls is None else f"sensitivity for {cls!r}"
        if not now or not then or now["value"] is None or not then["ci95"] or now["of"] == 0:
            continue
        if now["value"] < then["ci95"][0]:
            lines.append(f"The {words} in practice, {now['value']:.1%} ({now['hits']} of {now['of']}), is below what "
                         f"the {split} split promised: {then['value']:.1%} ({then['ci95'][0]:.1%}-"
                         f"{then['ci95'][1]:.1%}).")
    return lines


def _calibration(cases: list[tuple[dict[str, Any], str]], classes: list[str]) -> dict[str, Any] | None:
    rows = [(e["probabilities"], t) for e, t in cases if isinstance(e.get("probabilities"), dict)]
    if not rows:
        return None
    probs = np.array([[float(p.get(c, 0.0)) for c in classes] for p, _ in rows])
    labels = [classes.index(t) for _, t in rows]
    confidence = float(probs.max(axis=1).mean())
    accuracy = float(np.mean(probs.argmax(axis=1) == np.asarray(labels)))
    return {"images": len(rows), "mean_confidence": confidence, "accuracy_of_most_probable": accuracy,
            "ece": expected_calibration_error(probs, labels)}


def monitor_report(log_path: Path, truth_csv: Path | None = None, window: str | int = "day") -> dict[str, Any]:
    """The whole report (JSON-ready); see the module docstring."""
    log_path = Path(log_path)
    if not log_path.is_file():
        raise UserError(f"No watch log at {log_path.name}.", "Give the --log file of `desktop-tl watch`.")
    verification = verify_log(log_path)
    entries = read_entries(log_path)
    starts = [e for e in entries if e.get("kind") == "start"]
    if not starts:
        raise UserError(f"{log_path.name} is not a watch log (it has no start entry).",
                        "Give the --log file of `desktop-tl watch`.")
    start = starts[-1]                                  # the model watching now
    images = [e for e in entries if e.get("kind") == "image" and e.get("model_sha256") == start["model_sha256"]]
    familiarity = Familiarity.from_dict(start.get("familiarity"))
    report: dict[str, Any] = {
        "log": log_path.name, "chain": _chain(verification), "model": start.get("model"),
        "model_sha256": start["model_sha256"], "classes": start.get("classes"), "images": len(images),
        "images_of_other_models": sum(1 for e in entries if e.get("kind") == "image") - len(images),
        "skipped": sum(1 for e in entries if e.get("kind") == "skipped"),
        "repairs": sum(1 for e in entries if e.get("kind") == "repair"),
        "statuses": {s: sum(1 for e in images if e.get("status") == s) for s in STATUSES},
        "expected_unfamiliar_share": familiarity.flagged_share if familiarity else None,
        "windows": counts_over_time(images, window, familiarity)}
    if truth_csv is not None:
        report["truth"] = _truth_section(images, start, Path(truth_csv))
    return report


def _chain(v: Verification) -> dict[str, Any]:
    return {"intact": v.ok, "entries": v.entries, "bad_line": v.bad_line, "reason": v.reason}


def _dict_field(value: Any) -> dict[str, Any] | None:
    """A start entry's rule (the watcher writes the model's metadata parsed), or None when absent or not one."""
    return value if isinstance(value, dict) else None


def _truth_section(images: list[dict[str, Any]], start: dict[str, Any], truth_csv: Path) -> dict[str, Any]:
    by_path, by_sha = read_truth(truth_csv)
    classes = list(start.get("classes") or [])
    cases, unknown_labels = [], Counter()
    for entry in images:
        truth = by_path.get(entry["path"]) or by_sha.get(str(entry.get("input_sha256")))
        if truth is None:
            continue
        if truth in classes:
            cases.append((entry, truth))
        else:
            unknown_labels[truth] += 1
    decision = _dict_field(start.get("decision"))
    counts = realised_counts(cases, classes, decision.get("positive") if decision else None)
    realised = figures_from_counts(counts)
    answered = [(e, t) for e, t in cases if e.get("status") == "answered"]
    section: dict[str, Any] = {
        "matched": len(cases), "unmatched": len(images) - len(cases) - sum(unknown_labels.values()),
        "labels_not_of_the_model": dict(unknown_labels), "realised": realised,
        "answered": {"coverage": rate(len(answered), len(cases)),
                     "accuracy": rate(sum(e["label"] == t for e, t in answered), len(answered))},
        "calibration": _calibration(cases, classes), "promised": None, "shortfalls": []}
    promised_counts = _dict_field(start.get("held_out_counts"))
    if promised_counts:
        promised = figures_from_counts(promised_counts)
        section["promised"] = promised | {"split": promised_counts.get("split", "test")}
        section["shortfalls"] = _shortfalls(realised, promised, promised_counts.get("split", "test"))
    return section


def figure_words(f: dict[str, Any] | None) -> str:
    """A rate with its interval and counts, e.g. "70.0% (54.6%-81.9%, 28/40)"; "-" when undefined."""
    if not f or f.get("value") is None:
        return "-"
    return f"{f['value']:.1%} ({f['ci95'][0]:.1%}-{f['ci95'][1]:.1%}, {f['hits']}/{f['of']})"


def monitor_text(report: dict[str, Any]) -> str:
    """The report in lines a person reads."""
    chain = report["chain"]
    lines = [f"{report['log']}: {counted(report['images'], 'image')} classified by {report['model']} "
             f"(sha256 {report['model_sha256'][:12]}…), {counted(report['skipped'], 'unreadable file')} skipped.",
             "Hash chain intact." if chain["intact"] else
             f"HASH CHAIN BROKEN at line {chain['bad_line']}: {chain['reason']}."]
    if report["repairs"]:
        lines.append(f"{report['repairs']} torn last line(s) repaired after a crash (recorded in the log).")
    statuses = report["statuses"]
    lines.append("Statuses: " + ", ".join(f"{statuses[s]} {s}" for s in STATUSES) + ".")
    lines.append("")
    lines.append("Window\tImages\t" + "\t".join(STATUSES) + "\tTypicality\tLabels")
    for row in report["windows"]:
        labels = ", ".join(f"{k} {v}" for k, v in row["labels"].items())
        typical = f"{row['typicality']['mean']:.2f}" if row["typicality"] else "-"
        lines.append(f"{row['window']}\t{row['images']}\t" + "\t".join(str(row["statuses"][s]) for s in STATUSES)
                     + f"\t{typical}\t{labels}" + ("\tDRIFT ALARM" if row["drift_alarm"] else ""))
    share = report["expected_unfamiliar_share"]
    alarms = [r["window"] for r in report["windows"] if r["drift_alarm"]]
    if share is not None:
        lines.append(f"Drift: held-out images of the training kind are flagged unfamiliar {share:.0%} of the time and "
                     "have a typicality of 0.50 on average; "
                     + (f"in {', '.join(alarms)} more were flagged, or the typicality was lower, beyond chance: check "
                        "whether the scanner, the protocol or the population changed." if alarms
                        else "no window departs from that beyond chance."))
    truth = report.get("truth")
    if truth:
        lines += ["", f"Against the true labels: {truth['matched']} cases matched, {truth['unmatched']} without a "
                      "true label yet."]
        unknown = truth["labels_not_of_the_model"]
        if unknown:
            lines.append(f"{counted(sum(unknown.values()), 'case')} with a true label the model does not know "
                         f"({', '.join(sorted(unknown))}): left out of the figures.")
        promised, realised = truth["promised"] or {}, truth["realised"]
        source = f"promised ({promised.get('split', 'test')} split)" if promised else "promised (not in the model)"
        lines.append(f"Figure\tin practice\t{source}")
        for name, cls, now, then in figure_pairs(realised, promised):
            words = FIGURE_WORDS[name] if cls is None else f"sensitivity {cls}"
            lines.append(f"{words}\t{figure_words(now)}\t{figure_words(then)}")
        answered = truth["answered"]
        lines.append(f"Answered (not referred): {figure_words(answered['coverage'])} of cases, accuracy among them "
                     f"{figure_words(answered['accuracy'])}.")
        cal = truth["calibration"]
        if cal:
            lines.append(f"Calibration: mean confidence {cal['mean_confidence']:.1%} against "
                         f"{cal['accuracy_of_most_probable']:.1%} correct; ECE {cal['ece']:.3f}.")
        if not truth["promised"]:
            lines.append("The model carries no held-out figures to compare with (exported before desktop_tl wrote "
                         "them into the model): export the run again for the next trial.")
        else:
            lines += truth["shortfalls"] or ["No realised figure falls below the interval its held-out split "
                                             "promised."]
    return "\n".join(lines)
