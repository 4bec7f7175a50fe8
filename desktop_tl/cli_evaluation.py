"""The evaluation commands of the CLI: `evaluate` (with operating points and subgroups), `report`,
`review-labels` and `suggest`, on the same engine functions the Evaluation panel uses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from desktop_tl.core.errors import UserError
from desktop_tl.core.reporting import format_metrics


def cmd_evaluate(args: argparse.Namespace) -> int:
    from desktop_tl.core.evaluation.splits import evaluate_run

    if args.refer_target is not None:
        from desktop_tl.core.evaluation.referral_target import choose_referral_target

        _referral, words = choose_referral_target(Path(args.run), args.refer_target)
        print(f"Saved in run.json. {words} Export the model again to carry it.")
    choice = _threshold_choice(args)
    if choice is not None:
        from desktop_tl.core.deploy.predict import describe_decision
        from desktop_tl.core.evaluation.operating_point import choose_decision

        decision = choose_decision(Path(args.run), *choice)
        print(f"Saved in run.json. {describe_decision(decision)} Export the model again to carry it.")
    metrics = evaluate_run(Path(args.run), data_root=Path(args.data) if args.data else None, which=args.checkpoint)
    if args.by is not None:
        groups = metrics["subgroups"]["test"]
        if args.by not in groups:
            known = ", ".join(groups) or "none (add columns to the CSV, or use DICOM files)"
            raise UserError(f"The test images have no subgroup attribute {args.by!r}.", f"Known attributes: {known}.")
        metrics["subgroups"]["test"] = {args.by: groups[args.by]}
    print(json.dumps(metrics, indent=2) if args.json else format_metrics(metrics))
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from desktop_tl.core.deploy.label_assist import rank_unlabelled, write_suggestions

    model = Path(args.model) if args.model else _exported_or_export(Path(args.run))
    if not model.is_file():
        raise UserError(f"There is no model file {model.name}.", "Give the path of an exported model with --model, "
                                                                  "or leave it out to use the run's own.")
    out = Path(args.out)
    suggestions = rank_unlabelled(model, Path(args.unlabelled), out.parent)
    write_suggestions(out, suggestions)
    print(f"Wrote {len(suggestions)} images to {out.name}, the least certain first: label those first (fill the "
          "label column; the suggestion is the model's guess), then import the CSV as a dataset or add its rows "
          "to your labels CSV.")
    for s in suggestions[:10]:
        print(f"{s.path}\tsuggested {s.suggested!r} ({s.probability:.0%}, margin {s.margin:.2f})")
    return 0


def _exported_or_export(run_dir: Path) -> Path:
    """The run's exported model; a finished run without one is exported first (as `export` would), and says so."""
    from desktop_tl.core.deploy.export import export_onnx
    from desktop_tl.core.runs.folder import RunFolder

    folder = RunFolder(run_dir)
    exported = folder.exported_model()
    if exported is not None:
        return exported
    if folder.status() != "finished":
        raise UserError(f"{run_dir.name} has not finished, so it has no model to suggest labels with yet.",
                        f"Finish it first: desktop-tl train ... --out {run_dir} --resume")
    print(f"{run_dir.name} has no exported model yet: exporting it first, as desktop-tl export does…", flush=True)
    result = export_onnx(run_dir)
    if not result.parity_ok:
        raise UserError("The exported model does not give the same probabilities as the trained one.",
                        f"Run desktop-tl export {run_dir} to see the comparison.")
    return folder.exported_file(result.onnx_file)


def cmd_review_labels(args: argparse.Namespace) -> int:
    from desktop_tl.core.training.label_review import REVIEW_FILE, review_labels

    suspects = review_labels(Path(args.run))
    print(f"{len(suspects)} images whose label looks wrong (a model that never saw them disagrees confidently); "
          f"all saved in {REVIEW_FILE} in the run folder. Check each one: it may be a hard image, not a mistake.")
    for s in suspects[:max(0, args.top)]:
        print(f"{s.path}\t{s.split}\tlabelled {s.given!r} ({s.given_probability:.0%})\t"
              f"looks like {s.suggested!r} ({s.suggested_probability:.0%})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from desktop_tl.core.evaluation.report import write_report

    trial = None
    if args.trial:
        from desktop_tl.core.evaluation.trial import monitor_report

        trial = monitor_report(Path(args.trial), Path(args.truth) if args.truth else None)
    elif args.truth:
        raise UserError("--truth goes with --trial: the true labels of a silent trial's cases.",
                        "Give the watch log with --trial LOG.jsonl.")
    target = write_report(Path(args.run), Path(args.out) if args.out else None, trial)
    print(f"Wrote the report: {target.name} in the {'run' if not args.out else 'chosen'} folder.")
    return 0


def _threshold_choice(args: argparse.Namespace) -> tuple[str, float | None] | None:
    """(criterion, target) of the operating-point option given to `evaluate`, or None."""
    for criterion, value in (("fixed", args.threshold), ("sensitivity", args.target_sensitivity),
                             ("specificity", args.target_specificity)):
        if value is not None:
            return criterion, value
    return ("youden", None) if args.youden else None


def add_evaluation_commands(sub) -> None:
    """evaluate, suggest, review-labels, report."""
    p = sub.add_parser("evaluate", help="evaluate a run's best checkpoint on its validation and test splits")
    p.add_argument("run", help="run folder")
    p.add_argument("--data", help="where the run's dataset lives now, if it moved")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.add_argument("--by", metavar="ATTRIBUTE",
                   help="test figures per value of one subgroup attribute only (a CSV column such as "
                        "site, or a DICOM tag: Modality, Manufacturer, BodyPartExamined)")
    choice = p.add_argument_group(
        "operating point (two classes): choose the threshold on validation, save it with the run")
    pick = choice.add_mutually_exclusive_group()
    pick.add_argument("--threshold", type=float, metavar="P",
                      help="call the positive class when its probability is at least P")
    pick.add_argument("--target-sensitivity", type=float, metavar="S",
                      help="the highest threshold that finds at least S of the positives (e.g. 0.95)")
    pick.add_argument("--target-specificity", type=float, metavar="S",
                      help="the lowest threshold that clears at least S of the negatives")
    pick.add_argument("--youden", action="store_true", help="the best balanced accuracy (the default rule)")
    p.add_argument("--refer-target", type=float, metavar="E",
                   help="choose the referral threshold again for this error among answered images (0: off), on "
                        "the held-out predictions the run kept, and save it")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("suggest", help="rank unlabelled images by how much labelling them would help")
    p.add_argument("run", help="run folder with an exported model (desktop-tl export RUN)")
    p.add_argument("unlabelled", help="folder of unlabelled images or DICOM files")
    p.add_argument("--out", required=True, help="labels CSV to write: fill its label column, then import it")
    p.add_argument("--model", help="ONNX model to use instead of RUN/model.onnx")
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("review-labels", help="list training and validation images whose label looks wrong")
    p.add_argument("run", help="run folder")
    p.add_argument("--top", type=int, default=30, help="how many suspects to print (all are saved; default 30)")
    p.set_defaults(func=cmd_review_labels)

    p = sub.add_parser("report", help="write a self-contained HTML evaluation report of a finished run")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", help="HTML file to write (default RUN/report.html)")
    p.add_argument("--trial", metavar="LOG", help="add a section on the silent trial in this watch log")
    p.add_argument("--truth", metavar="CSV", help="with --trial: the true labels (path,label or sha256,label)")
    p.set_defaults(func=cmd_report)
