"""The evaluation report a lab can file: one self-contained HTML page (images embedded, charts as inline
SVG, no scripts, no links out) with the dataset, the model and recipe, the training curves, the figures at
the run's operating point with their intervals, the calibration, the confusion matrix, a sample of mistakes
and the cautions. It names no absolute path and no DICOM identifier: images are named by their path inside
the dataset, as everywhere else in the app."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from desktop_tl.core.atomic import atomic_write_text
from desktop_tl.core.data.imageio import ImageLoadError, load_image
from desktop_tl.core.data.index import near_duplicate_lines
from desktop_tl.core.decision import rule_text
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.operating_point import roc_curve
from desktop_tl.core.evaluation.trial import FIGURE_WORDS, STATUSES, figure_pairs, figure_words
from desktop_tl.core.hashing import file_sha256
from desktop_tl.core.models.delivered import delivered_model_words
from desktop_tl.core.reporting import OPERATING_RATES, rate_text, status_figures, status_lines
from desktop_tl.core.runs.folder import BEST_CHECKPOINT, RunFolder, RunInfo

MISTAKES_SHOWN = 12
THUMBNAIL = 128
REPORT_FILE = "report.html"

_STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; }
th { background: #f2f2f2; } td.n { text-align: right; } .caution { background: #fff4e0; padding: 0.4em; }
.mistakes { display: flex; flex-wrap: wrap; gap: 0.6em; } .mistakes figure { margin: 0; width: 140px; }
figcaption { font-size: 0.75em; word-break: break-all; } svg { background: #fff; border: 1px solid #ddd; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='n'>{_esc(c)}</td>" if isinstance(c, (int, float)) else
                                    f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def svg_chart(series: dict[str, tuple[list[float], list[float]]], x_label: str, y_label: str,
              x_range: tuple[float, float], y_range: tuple[float, float], width: int = 420, height: int = 260) -> str:
    """Line chart as inline SVG: one polyline per named series, axes with their range and labels."""
    colours = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")
    left, bottom, pad = 46, 34, 10
    (x0, x1), (y0, y1) = x_range, y_range
    sx = lambda x: left + (x - x0) / ((x1 - x0) or 1) * (width - left - pad)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / ((y1 - y0) or 1) * (height - bottom - pad)  # noqa: E731
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
             f"<line x1='{left}' y1='{height - bottom}' x2='{width - pad}' y2='{height - bottom}' stroke='#888'/>",
             f"<line x1='{left}' y1='{pad}' x2='{left}' y2='{height - bottom}' stroke='#888'/>",
             f"<text x='{left}' y='{height - 18}' font-size='10'>{x0:.3g}</text>",
             f"<text x='{width - pad - 20}' y='{height - 18}' font-size='10'>{x1:.3g}</text>",
             f"<text x='4' y='{height - bottom}' font-size='10'>{y0:.3g}</text>",
             f"<text x='4' y='{pad + 8}' font-size='10'>{y1:.3g}</text>",
             f"<text x='{width // 2 - 40}' y='{height - 4}' font-size='11'>{_esc(x_label)}</text>",
             f"<text x='12' y='{height // 2}' font-size='11' transform='rotate(-90 12 {height // 2})'>"
             f"{_esc(y_label)}</text>"]
    for i, (name, (xs, ys)) in enumerate(series.items()):
        points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True)
                          if x is not None and y is not None)
        colour = colours[i % len(colours)]
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{points}'/>")
        parts.append(f"<text x='{width - 150}' y='{pad + 14 + 14 * i}' font-size='11' fill='{colour}'>"
                     f"{_esc(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _thumbnail_data_uri(path: Path) -> str | None:
    try:
        image = load_image(path)
    except (ImageLoadError, OSError):
        return None
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _dataset_section(folder: RunFolder) -> tuple[str, Path | None]:
    try:
        index = folder.index()
    except UserError:
        return "<p>The run's dataset could not be read; its figures are below.</p>", None
    counts = index.counts()
    rows = [[c, n["train"], n["val"], n["test"], n["train"] + n["val"] + n["test"]] for c, n in counts.items()]
    text = _table(["class", "train", "validation", "test", "total"], rows)
    text += f"<p>{len(index.skipped)} files skipped at import"
    text += (": " + "; ".join(f"{_esc(s.path)} ({_esc(s.reason)})" for s in index.skipped[:10])
             + (" …" if len(index.skipped) > 10 else "") if index.skipped else "") + ".</p>"
    near = near_duplicate_lines(index, shown=10)
    if near:
        text += "<p>" + "<br>".join(_esc(line.strip()) for line in near if line) + "</p>"
    if index.warnings:
        text += "<ul>" + "".join(f"<li>{_esc(w)}</li>" for w in index.warnings) + "</ul>"
    return text, index.root


def _figures_section(metrics: dict[str, Any]) -> str:
    if metrics.get("task") == "multi_label":
        return _label_figures(metrics)
    rows = []
    for split, name in (("val", "validation"), ("test", "test")):
        m = metrics.get(split) or {}
        if not m.get("images"):
            continue
        low, high = m["accuracy_95ci"]
        rows.append([name, m["images"], f"{_pct(m['accuracy'])} ({low:.0%}–{high:.0%})",
                     _pct(m.get("majority_baseline")), _pct(m.get("balanced_accuracy")),
                     "n/a" if m.get("roc_auc_ovr") is None else f"{m['roc_auc_ovr']:.3f}",
                     "n/a" if m.get("ece") is None else f"{m['ece']:.3f}"])
    text = _table(["split", "images", "accuracy (95% interval)", "always the largest class", "balanced accuracy",
                   "ROC AUC", "calibration error"], rows)
    decision = metrics.get("decision")
    if isinstance(decision, dict):
        text += f"<p>Operating point: {_esc(rule_text(**decision))}.</p>"
        point_rows = []
        for split, name in (("val", "validation"), ("test", "test")):
            point = (metrics.get(split) or {}).get("operating_point")
            if point:
                point_rows.append([name] + [rate_text(point[k]) for k, _ in OPERATING_RATES])
        text += _table(["split", "sensitivity", "specificity", "PPV", "NPV"], point_rows)
    return text


def _label_figures(metrics: dict[str, Any]) -> str:
    """A multi-label run's figures: per split the exact-set accuracy and F1, then every label's AUC and, at its
    threshold, sensitivity, specificity, PPV and NPV with 95% intervals, and its calibration error."""
    figure = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    rows = [[name, m["images"], rate_text(m["exact_set_accuracy"]), figure(m["macro_f1"]), figure(m["micro_f1"]),
             figure(m["macro_auc"])] for split, name in (("val", "validation"), ("test", "test"))
            if (m := metrics.get(split) or {}).get("images")]
    text = _table(["split", "images", "exact set of labels right", "macro F1", "micro F1", "mean ROC AUC"], rows)
    rules = metrics.get("label_rules") or {}
    text += (f"<p>Each label has its own threshold, chosen on {_esc(rules.get('chosen_on', 'validation'))} for the "
             f"{_esc(rules.get('criterion', 'balanced accuracy'))} of that label; an image shows every label whose "
             "probability reaches it, and none when no label does.</p>")
    for split, name in (("val", "validation"), ("test", "test")):
        m = metrics.get(split) or {}
        if m.get("images"):
            text += f"<h3>Per label ({name})</h3>" + _table(
                ["label", "images", "ROC AUC", "threshold", "sensitivity", "specificity", "PPV", "NPV",
                 "calibration error"],
                [[label, row["images"], figure(row["auc"]), f"{row['threshold']:.3f}",
                  *(rate_text(row[k]) for k, _ in OPERATING_RATES), figure(row["ece"])]
                 for label, row in m["per_label"].items()])
    return text


def _curves(metrics: dict[str, Any]) -> str:
    history = [h for h in metrics.get("history") or [] if isinstance(h, dict)]
    charts = []
    if history:
        epochs = [h["epoch"] for h in history]
        losses = [v for h in history for v in (h.get("train_loss"), h.get("val_loss")) if isinstance(v, (int, float))]
        charts.append(svg_chart({"train loss": (epochs, [h.get("train_loss") for h in history]),
                                 "validation loss": (epochs, [h.get("val_loss") for h in history])},
                                "epoch", "loss", (min(epochs), max(epochs)), (0.0, max(losses + [1e-6]))))
    scores = {s: (metrics.get(s) or {}).get("scores") for s in ("val", "test")}
    roc = {f"{name} ROC": (c["fpr"], c["tpr"]) for s, name in (("val", "validation"), ("test", "test"))
           if isinstance(scores[s], dict) and (c := roc_curve([bool(v) for v in scores[s]["is_positive"]],
                                                             scores[s]["probability"]))}
    if roc:
        charts.append(svg_chart(roc, "1 - specificity", "sensitivity", (0.0, 1.0), (0.0, 1.0)))
    bins = (metrics.get("test") or {}).get("reliability") or []
    if bins:
        centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
        charts.append(svg_chart({"test accuracy by confidence": (centres, [b["accuracy"] for b in bins]),
                                 "perfect calibration": ([0, 1], [0, 1])}, "confidence", "accuracy",
                                (0.0, 1.0), (0.0, 1.0)))
    return " ".join(charts)


def _referral_section(metrics: dict[str, Any]) -> str:
    """When the model refers images to a person: its rules, the share answered, the error among the answered
    and the share flagged unfamiliar (validation and test, with intervals), and the risk-coverage curves with
    the chosen point."""
    if not metrics.get("referral") and not metrics.get("unfamiliar"):
        return "<p>The model answers every image (referral was turned off, or too few held-out images set a rule).</p>"
    text = "".join(f"<p>{_esc(line)}</p>" for line in status_lines(metrics)[:2] if line.startswith(("Referral", "Unfamiliar")))
    text += _table(["split", "answered", "error among answered", "flagged unfamiliar"],
                   [list(row) for row in status_figures(metrics)])
    referral = metrics.get("referral") or {}
    curves = {f"{name} error among answered": (c["coverage"], c["error"])
              for key, name in (("val", "validation"), ("test", "test"))
              if (c := (metrics.get("risk_coverage") or {}).get(key)) and c.get("coverage")}
    if curves:
        chosen = (referral.get("val") or {}).get("coverage")
        top = max([max(e) for _, e in curves.values()] + [referral.get("target", 0.0)]) * 1.1 or 0.1
        if chosen is not None:
            curves["answered at the chosen threshold (validation)"] = ([chosen, chosen], [0.0, top])
        if "target" in referral:
            curves[f"target {referral['target']:.0%}"] = ([0.0, 1.0], [referral["target"]] * 2)
        text += svg_chart(curves, "share of images answered", "error among answered", (0.0, 1.0), (0.0, top))
    return text


def _mistakes(metrics: dict[str, Any], root: Path | None) -> str:
    mistakes = ((metrics.get("test") or {}).get("misclassified") or [])[:MISTAKES_SHOWN]
    if not mistakes:
        return "<p>No mistakes on the test split.</p>"
    figures = []
    for m in mistakes:
        uri = _thumbnail_data_uri(root / m["path"]) if root is not None else None
        image = f"<img src='{uri}' alt='' width='{THUMBNAIL}'>" if uri else "<p>(image not found)</p>"
        figures.append(f"<figure>{image}<figcaption>{_esc(m['path'])}<br>true {_esc(m['true'])}, predicted "
                       f"{_esc(m['predicted'])} ({m['probability']:.0%})</figcaption></figure>")
    return f"<div class='mistakes'>{''.join(figures)}</div>"


def _model_words(folder: RunFolder, info: RunInfo) -> str:
    """The model the run delivered, in words, and what it started from."""
    started = f"{info.config.model} with {info.config.weights} weights"
    delivered = delivered_model_words(folder.checkpoint_meta(BEST_CHECKPOINT), info.config.model)
    if delivered == info.config.model:
        return started
    return f"The delivered model: {delivered} (the pretrained model: {started})"


def _choices_made_on(metrics: dict[str, Any]) -> str:
    """Where the recipe's choices were made: the validation split, or cross-validation over train+val."""
    if metrics.get("cross_validation"):
        folds = metrics["cross_validation"].get("folds")
        refit = metrics["cross_validation"].get("refit")
        after = (f"; the delivered model was then trained again on all {refit['images']} training and validation "
                 "images, its calibration and threshold taken from the validation predictions of the model before "
                 "that refit" if isinstance(refit, dict) and refit.get("images") else "")
        return (f"by {folds}-fold cross-validation over the training and validation images (and on the validation "
                f"split for fine-tuning's epochs){after}")
    return "on the validation split"


def _networks_words(metrics: dict[str, Any]) -> str:
    """How many fine-tuned networks the anytime budget averaged, and why it stopped adding them (or why it trained
    none: the budget held no more)."""
    networks = metrics.get("finetuned_networks") or {}
    if not networks.get("rounds"):
        return f" {networks['ended']}" if networks.get("ended") else ""
    return (f" The time left after fine-tuning trained further networks with other seeds, each kept while it "
            f"lowered the validation loss of the average: {networks['averaged']} averaged. "
            f"{networks.get('ended') or ''}")


def _trial_section(trial: dict[str, Any], folder: RunFolder) -> str:
    """A silent trial's monitor report (core.evaluation.trial.monitor_report) as HTML: the chain, counts per
    window, drift, and the realised figures beside the promised ones."""
    chain = trial["chain"]
    exported = folder.exported_model()
    parts = [f"<p>{trial['images']} images classified by {_esc(trial['model'])} (SHA-256 "
             f"{_esc(trial['model_sha256'][:16])}…), {trial['skipped']} unreadable files skipped; the log's hash chain "
             + ("is intact." if chain["intact"] else f"is broken at line {chain['bad_line']} ({_esc(chain['reason'])}).")
             + "</p>"]
    if exported is not None and file_sha256(exported) != trial["model_sha256"]:
        parts.append("<p class='caution'>The trial's model is not this run's current export.</p>")
    parts.append(_table(["Window", "Images", *STATUSES, "Typicality", "Drift alarm"],
                        [[w["window"], w["images"], *(w["statuses"][s] for s in STATUSES),
                          f"{w['typicality']['mean']:.2f}" if w["typicality"] else "-",
                          "yes" if w["drift_alarm"] else ""] for w in trial["windows"]]))
    if trial.get("expected_unfamiliar_share") is not None:
        parts.append(f"<p>Images of the training kind are flagged unfamiliar {trial['expected_unfamiliar_share']:.0%} "
                     "of the time and have a typicality of 0.50 on average; an alarm marks a window whose unfamiliar "
                     "share is above that beyond its 95% interval, or whose typicality is lower than chance allows."
                     "</p>")
    truth = trial.get("truth")
    if truth:
        promised, realised = truth["promised"] or {}, truth["realised"]
        rows = [[FIGURE_WORDS[name] if cls is None else f"sensitivity {cls}", figure_words(now), figure_words(then)]
                for name, cls, now, then in figure_pairs(realised, promised)]
        parts.append(f"<p>{truth['matched']} cases have a true label ({truth['unmatched']} not yet).</p>")
        parts.append(_table(["Figure", "In practice (95% interval)",
                             f"Promised ({promised.get('split', 'test')} split)" if promised else "Promised"], rows))
        parts += [f"<p class='caution'>{_esc(s)}</p>" for s in truth["shortfalls"]]
    return "\n".join(parts)


def build_report(run_dir: Path, trial: dict[str, Any] | None = None) -> str:
    """The report of a finished run as one HTML document; with `trial` (a monitor report of a watch log), a
    section on the silent trial."""
    folder = RunFolder(run_dir)
    info = folder.info()
    metrics = folder.metrics()
    if not info.finished or metrics is None:
        raise UserError("The run has not finished, so there is nothing to report yet.",
                        "Finish (or resume) the run, then make the report.")
    dataset, root = _dataset_section(folder)
    plan_lines = [line for line in metrics.get("plan_description") or [] if isinstance(line, str)]
    matrix = metrics.get("test", {}).get("confusion_matrix") or []
    classes = metrics.get("classes") or info.classes
    cautions = metrics.get("cautions") or []
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>desktop_tl evaluation report</title><style>{_STYLE}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f"<p>Made by desktop_tl on {datetime.now():%Y-%m-%d %H:%M}. Classes: "
        f"{_esc(', '.join(classes))}. The test split was kept apart and evaluated once, when the run finished; "
        f"every choice (threshold, calibration, recipe) was made {_choices_made_on(metrics)}.</p>",
        "<h2>Dataset</h2>", dataset,
        "<h2>Model and recipe</h2>",
        f"<p>{_esc(_model_words(folder, info))}; best epoch "
        f"{_esc(metrics.get('best_epoch', metrics.get('epoch')))}.{_esc(_networks_words(metrics))}</p>",
        "<ul>" + "".join(f"<li>{_esc(line.strip())}</li>" for line in plan_lines) + "</ul>",
        "<h2>Figures</h2>", _figures_section(metrics),
        "<h2>Referred images</h2>", _referral_section(metrics),
        "<h2>Cautions</h2>",
        "".join(f"<p class='caution'>{_esc(c)}</p>" for c in cautions) or "<p>None.</p>",
        "<h2>Curves</h2>", _curves(metrics),
        *(() if metrics.get("task") == "multi_label" else (
            "<h2>Confusion matrix (test; rows: true class, columns: predicted)</h2>",
            _table([""] + list(classes), [[c] + list(row) for c, row in zip(classes, matrix, strict=False)]))),
        "<h2>A sample of mistakes (test)</h2>", _mistakes(metrics, root),
        *(("<h2>Silent trial</h2>", _trial_section(trial, folder)) if trial else ()),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(run_dir: Path, out: Path | None = None, trial: dict[str, Any] | None = None) -> Path:
    """Write the report (atomically) to `out`, by default RUN/report.html; the path written."""
    target = Path(out) if out else Path(run_dir) / REPORT_FILE
    atomic_write_text(target, build_report(run_dir, trial))
    return target
