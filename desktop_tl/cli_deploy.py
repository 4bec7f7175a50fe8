"""The deployment commands of the CLI: `export` (ONNX with its parity check, optionally int8) and `predict`
(onnxruntime only, the same rules Try it applies)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from desktop_tl.core.errors import UserError
from desktop_tl.core.reporting import file_size


def cmd_export(args: argparse.Namespace) -> int:
    from desktop_tl.core.deploy.export import PARITY_TOLERANCE, export_onnx

    result = export_onnx(Path(args.run), Path(args.out) if args.out else None, which=args.checkpoint,
                         data_root=Path(args.data) if args.data else None)
    print(export_summary(Path(args.run), result, PARITY_TOLERANCE))
    if getattr(args, "int8", False) and result.parity_ok:
        from desktop_tl.core.deploy.quantize import compare_models, format_comparison, quantize_int8
        from desktop_tl.core.runs.folder import RunFolder, load_index

        run_dir = Path(args.run)
        fp32 = RunFolder(run_dir).exported_file(result.onnx_file)
        index = load_index(run_dir, Path(args.data) if args.data else None)
        int8 = quantize_int8(fp32, index)
        print(f"Wrote {int8} (int8, calibrated on training images). Before you use it:")
        print(format_comparison(compare_models(fp32, int8, index)))
    return 0 if result.parity_ok else 1


def export_summary(run_dir: Path, result, tolerance: float) -> str:
    """What an export wrote and how its parity check went, in two lines."""
    from desktop_tl.core.runs.folder import RunFolder

    where = RunFolder(run_dir).exported_file(result.onnx_file)
    diffs = ", ".join(f"{k.replace('_', ' ')}: {v:.2e}" for k, v in result.parity_max_abs_diff.items())
    verdict = "OK" if result.parity_ok else f"FAILED (tolerance {tolerance:g})"
    return (f"Exported {where} ({file_size(result.size_bytes)}, opset {result.opset}).\n"
            f"Parity with PyTorch on real images, largest probability difference: {diffs} -> {verdict}")


def cmd_predict(args: argparse.Namespace) -> int:
    from desktop_tl.core.deploy.predict import (
        STATUS_WORDS,
        OnnxClassifier,
        collect_inputs,
        describe_decision,
        prediction_record,
        write_heatmaps,
        write_predictions_csv,
    )

    classifier = OnnxClassifier(Path(args.model))
    if args.heatmaps and not classifier.has_heatmaps:
        raise UserError(f"{Path(args.model).name} carries no heat maps (exported before they existed, its "
                        "architecture's head is not a pooled linear layer, or it averages several models).",
                        "Export the model again with `desktop-tl export`, or leave out --heatmaps.")
    coverage = args.sets / 100 if args.sets else None
    if coverage is not None and (classifier.prediction_sets is None
                                 or coverage not in classifier.prediction_sets.coverages()):
        raise UserError(f"{Path(args.model).name} carries no {args.sets}% prediction sets (a model of two classes, "
                        "too few held-out images to calibrate them, or exported before they existed).",
                        "Export the model again with `desktop-tl export`, or leave out --sets.")
    predictions = list(classifier.predict_files(collect_inputs([Path(p) for p in args.paths]),
                                                heatmaps=bool(args.heatmaps)))
    rules = (classifier.label_rules.words(classifier.classes) if classifier.multi_label else
             describe_decision(classifier.decision, classifier.calibration, classifier.referral,
                               classifier.familiarity, classifier.has_status_rule))
    if args.json:
        print(json.dumps({"rules": rules, "classes": classifier.classes,
                          "predictions": [prediction_record(p) for p in predictions]}, indent=2))
    else:
        print(rules)
        if coverage is not None:
            rule = classifier.prediction_sets.rule(coverage)
            print(rule[:1].upper() + rule[1:] + ".")
        for p in predictions:
            if p.error:
                print(f"{p.path}\tskipped: {p.error}")
            elif p.labels is not None:
                print(f"{p.path}\t{';'.join(p.labels) or '(none of the labels)'}\t"
                      + " ".join(f"{c}={p.probabilities[c]:.3f}" for c in classifier.classes))
            else:
                named = f"\tset {';'.join(p.sets[f'{coverage:g}'])}" if coverage is not None else ""
                print(f"{p.path}\t{p.label}\t{p.probability:.3f}\t{STATUS_WORDS[p.status]}{named}")
    notes = sys.stderr if args.json else sys.stdout      # with --json, standard output is the document alone
    if args.csv:
        write_predictions_csv(Path(args.csv), predictions, classifier.classes, coverage, classifier.multi_label)
        print(f"Wrote {len(predictions)} rows to {args.csv}", file=notes)
    if args.heatmaps:
        written = write_heatmaps(Path(args.heatmaps), predictions)
        what = "for each label it found" if classifier.multi_label else "for the class it chose"
        print(f"Wrote {written} heat maps (where the model looked {what}) to {args.heatmaps}", file=notes)
    return 0


def add_deploy_commands(sub) -> None:
    """export, predict."""
    p = sub.add_parser("export", help="export a run's best checkpoint to ONNX and check parity")
    p.add_argument("run", help="run folder")
    p.add_argument("--data", help="where the run's dataset lives now, if it moved")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--out", help="ONNX file to write (default RUN/model.onnx)")
    p.add_argument("--int8", action="store_true",
                   help="also write MODEL.int8.onnx (static int8) and print speed and accuracy of both")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="classify images with an exported ONNX model (no PyTorch needed)")
    p.add_argument("model", help="the .onnx file from `desktop-tl export`")
    p.add_argument("paths", nargs="+", help="images, DICOM files or folders (searched recursively)")
    p.add_argument("--csv", help="also write path,label,probability,status and per-class columns to this CSV (a "
                                 "multi-label model: path,labels,status and one probability column per label)")
    p.add_argument("--json", action="store_true", help="print the predictions as one JSON document")
    p.add_argument("--heatmaps", metavar="DIR",
                   help="also write, per image, a PNG of where the model looked for the class it chose (a "
                        "multi-label model: one per label found)")
    p.add_argument("--sets", nargs="?", const=90, type=int, choices=(90, 95), metavar="90|95",
                   help="also give each image's prediction set: the classes that together hold the true one in 90%% "
                        "(default) or 95%% of cases, calibrated on held-out images (models of more than two classes)")
    p.set_defaults(func=cmd_predict)
