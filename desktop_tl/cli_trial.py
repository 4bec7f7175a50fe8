"""The silent-trial commands of the CLI: `watch` (classify a folder's images as they arrive, into a
tamper-evident log) and `monitor` (what the log shows: counts, drift, and with the true labels the realised
figures beside the promised ones)."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from desktop_tl.core.errors import UserError


def cmd_watch(args: argparse.Namespace) -> int:
    from desktop_tl.core.deploy.watch import FolderWatch
    from desktop_tl.core.events import TrialLogged

    watch = FolderWatch(Path(args.model), Path(args.folder), Path(args.log), settle_s=args.settle)
    if watch.log.repaired:
        print(f"Repaired {Path(args.log).name}: {watch.log.repaired['note']}.")
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}

    def show(logged: TrialLogged) -> None:
        entry = logged.entry
        if args.quiet or entry["kind"] not in ("image", "skipped"):
            return
        if entry["kind"] == "skipped":
            print(f"{entry['path']}\tskipped: {entry['reason']}", flush=True)
        else:
            print(f"{entry['path']}\t{entry['label']}\t{entry['probability']:.3f}\t{entry['status']}", flush=True)

    what = "the images in it now" if args.once else "the images in it now and every one that arrives (Ctrl+C stops)"
    print(f"Watching {Path(args.folder).name} with {Path(args.model).name}: {what}; logging to {Path(args.log).name}.",
          flush=True)
    try:
        counts = watch.run(stop.is_set, once=args.once, on_entry=show)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"Stopped: {counts.sentence()}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from desktop_tl.core.audit_log import verify_log
    from desktop_tl.core.evaluation.trial import monitor_report, monitor_text

    if args.verify:
        verification = verify_log(Path(args.log))
        print(verification.sentence(Path(args.log).name))
        return 0 if verification.ok else 1
    if args.window != "day" and not (args.window.isdigit() and int(args.window) > 0):
        raise UserError(f"--window takes 'day' or a number of images, not {args.window!r}.", "For example --window 50.")
    window = int(args.window) if args.window.isdigit() else args.window
    report = monitor_report(Path(args.log), Path(args.truth) if args.truth else None, window)
    print(json.dumps(report, indent=2) if args.json else monitor_text(report))
    return 0 if report["chain"]["intact"] else 1


def add_trial_commands(sub) -> None:
    """watch, monitor."""
    p = sub.add_parser("watch", help="classify the images in a folder and every one that arrives, into a "
                                     "tamper-evident log (a silent trial)")
    p.add_argument("model", help="the .onnx file from `desktop-tl export`")
    p.add_argument("folder", help="the folder new images (or DICOM files) arrive in, searched recursively")
    p.add_argument("--log", required=True, help="the log to append to (JSON lines; created when missing)")
    p.add_argument("--once", action="store_true", help="classify the images already there, then stop")
    p.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                   help="read a file once its size and time have not changed for this long (default 2)")
    p.add_argument("--quiet", action="store_true", help="print no line per image")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("monitor", help="report on a watch log: counts, drift, and the realised figures")
    p.add_argument("log", help="the --log file of `desktop-tl watch`")
    p.add_argument("--truth", help="CSV of the true labels: path,label (paths as the log has them) or sha256,label")
    p.add_argument("--window", default="day", metavar="day|N",
                   help="count per UTC day (default) or per N consecutive images")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument("--verify", action="store_true",
                   help="only check the hash chain: exit 0 when intact, 1 naming the first bad line")
    p.set_defaults(func=cmd_monitor)
