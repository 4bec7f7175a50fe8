"""The headless face of desktop_tl: `desktop-tl COMMAND ...` drives the same engine as the window."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from desktop_tl.cli_deploy import add_deploy_commands, export_summary
from desktop_tl.cli_evaluation import add_evaluation_commands
from desktop_tl.cli_options import (
    add_setting_options,
    choose_recipe,
    describe_setting_error,
    given_settings,
    split_config,
)
from desktop_tl.cli_trial import add_trial_commands
from desktop_tl.core.errors import SettingError, UserError
from desktop_tl.core.reporting import binary_size, format_metrics, throttled

EXIT_USAGE = 2
DEMO_RUNS = Path("runs")


def _print_error(exc: UserError) -> None:
    what = describe_setting_error(exc.setting, exc.what) if isinstance(exc, SettingError) else exc.what
    print(f"desktop-tl: error: {what}", file=sys.stderr)
    if exc.hint:
        print(f"  What to do: {exc.hint}", file=sys.stderr)


# -- models, import-check ----------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from desktop_tl.core.models.catalog import format_models_table, list_models

    entries = list_models(args.search or "", include_all=args.all or bool(args.search))
    if args.json:
        print(json.dumps([asdict(e) for e in entries], indent=2))
    else:
        print(format_models_table(entries))
    return 0


def cmd_import_check(args: argparse.Namespace) -> int:
    from desktop_tl.core.data.importer import import_dataset
    from desktop_tl.core.data.index import format_report

    split = split_config(args)
    split.validate()
    index = import_dataset(Path(args.data), split, progress=_progress_printer("Checking images") if not args.json else None)
    print(json.dumps(index.to_report(), indent=2) if args.json else format_report(index))
    return 0


# -- train ----------------------------------------------------------------------------------------------
def _weights_choice(model: str, weights: str | None) -> str:
    """core.models.weights_choice's choice for the run, with its warning and note printed."""
    from desktop_tl.core.models.weights_choice import choose_weights

    choice = choose_weights(model, weights)
    if choice.warning:
        print(f"Warning: {choice.warning}", file=sys.stderr)
    if choice.note:
        print(choice.note)
    return choice.id


def _train_config(args: argparse.Namespace):
    from desktop_tl.core.config import TrainConfig

    given = given_settings(args)
    given["recipe"] = choose_recipe(given)
    given["model"] = given.get("model") or TrainConfig().model
    given["weights"] = _weights_choice(given["model"], given.get("weights"))
    split = split_config(args)
    return TrainConfig(seed=split.seed, **given), split


def run_training(run_dir: Path, quiet: bool = False, silent: bool = False) -> int:
    """Drive `train_run` with a console progress line; Ctrl+C stops after the current batch. What is printed
    (but the progress line) also goes to the run's log.txt (core.runs.run_log).

    `silent` (ranks other than 0 under torchrun) prints nothing but errors and writes no log.
    """
    from desktop_tl.core.events import BatchProgress, EpochEnd, Failed, Finished
    from desktop_tl.core.reporting import describe
    from desktop_tl.core.runs.run_log import logged
    from desktop_tl.core.training.run import RunControl, train_run

    control = RunControl()
    events = train_run(run_dir, control) if silent else logged(run_dir, train_run(run_dir, control))
    status = 0
    tty = sys.stdout.isatty()
    last_line = 0.0
    while True:
        try:
            event = next(events)
        except StopIteration:
            break
        except KeyboardInterrupt:
            control.stop()
            print("\nStopping after the current batch; the last saved epoch is kept (resume with --resume).")
            continue
        if silent and not isinstance(event, Failed):
            continue
        if isinstance(event, BatchProgress):
            now = time.monotonic()
            if quiet or (not tty and now - last_line < 5 and event.batch != event.batches):
                continue
            last_line = now
            print(("\r" + describe(event).ljust(100)) if tty else describe(event), end="" if tty else "\n", flush=True)
        elif isinstance(event, EpochEnd):
            print(("\n" if tty and not quiet else "") + describe(event))
        elif isinstance(event, Failed):
            _print_error(UserError(event.what, event.hint))
            status = EXIT_USAGE
        elif isinstance(event, Finished) and event.stopped_by_user:
            print(f"{describe(event)} Continue with: desktop-tl train ... --out {run_dir} --resume")
            status = 130
        elif isinstance(event, Finished) and event.metrics is not None:
            print(format_metrics(event.metrics))
            print(f"Saved in {run_dir}: best.safetensors (epoch {event.best_epoch}), last.safetensors, metrics.json")
        elif describe(event):
            print(describe(event))
    return status


def cmd_train(args: argparse.Namespace) -> int:
    """Train here, or as one rank of `torchrun --nproc_per_node N -m desktop_tl train ...` (WORLD_SIZE > 1)."""
    from desktop_tl.core.training import distributed

    if not distributed.init():
        return _prepare_and_train(args)
    try:
        # rank 0 checks and creates the run folder; the others wait for it, then all open it
        early, error = None, None
        if distributed.is_main():
            try:
                early = _prepare_run(args)
            except UserError as exc:
                error = (exc.what, exc.hint)
        early, error = distributed.broadcast_object((early, error))
        if error is not None:
            if distributed.is_main():
                raise UserError(*error)
            return EXIT_USAGE
        if early is not None:
            return early
        return run_training(Path(args.out), quiet=not distributed.is_main(), silent=not distributed.is_main())
    finally:
        distributed.shutdown()


def _prepare_and_train(args: argparse.Namespace) -> int:
    early = _prepare_run(args)
    return early if early is not None else run_training(Path(args.out))


def _prepare_run(args: argparse.Namespace) -> int | None:
    """Check `--out` and create the run there unless resuming; an exit status when there is nothing to train."""
    from desktop_tl.core.runs.folder import RunFolder, create_run

    folder = RunFolder(Path(args.out))
    action = folder.training_start(args.resume)
    if action == "finished":
        print(f"The run in {folder.path} has already finished; nothing to do.")
        return 0
    if folder.has_run:
        removed = folder.remove_stale_temp_files()  # left by a crash or a kill in the middle of a save
        if removed:
            print(f"Removed {len(removed)} half-written file(s) left by an interrupted save.")
    if action == "start":
        config, split = _train_config(args)
        create_run(folder.path, Path(args.data), config, split, progress=_progress_printer("Importing"))
    return None


# -- demo, cache ----------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from desktop_tl.core.config import SplitConfig, TrainConfig, parse_budget
    from desktop_tl.core.deploy.export import PARITY_TOLERANCE, export_onnx
    from desktop_tl.core.paths import resource_path
    from desktop_tl.core.runs.folder import RunFolder, create_run

    run_dir = Path(args.out) if args.out else DEMO_RUNS / time.strftime("demo-%Y%m%d-%H%M%S")
    data = resource_path("demo", "images")
    started = time.perf_counter()
    print(f"Demo: the automatic recipe with the bundled EfficientNet-Lite0 on the demo images in {data}")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} is not empty.", "Remove it or pass --out with a new folder.")
    config = TrainConfig(recipe="auto", budget=parse_budget(args.budget))
    create_run(run_dir, data, config, SplitConfig(seed=0), progress=_progress_printer("Importing"))
    status = run_training(run_dir)
    if status:
        return status
    result = export_onnx(run_dir)
    print(export_summary(run_dir, result, PARITY_TOLERANCE))
    print(f"Done in {time.perf_counter() - started:.0f}s. Everything is in {run_dir.resolve()}:\n"
          f"  metrics.json (validation and test figures), model.onnx (for `desktop-tl predict`), "
          f"best.safetensors / last.safetensors (checkpoints)")
    print(f"Try it: desktop-tl predict {RunFolder(run_dir).model_file} {data}")
    if not result.parity_ok:
        return 1
    from desktop_tl.gui.shell.app import has_real_display, run_app

    if args.window and has_real_display():
        print("Opening the window on the demo run (close it to finish).")
        return run_app([sys.argv[0]], run_dir=run_dir)
    return 0


# -- cache ---------------------------------------------------------------------------------------------
def cmd_cache(args: argparse.Namespace) -> int:
    from desktop_tl.core.data.cache_folder import budget_bytes, clear_cache, decode_cache_dir, list_cache_files

    folder = decode_cache_dir()
    if args.action == "clear":
        cleared = clear_cache(folder)
        print(f"Removed {cleared.removed} cache file{'s' * (cleared.removed != 1)} from {folder}, "
              f"freeing {binary_size(cleared.freed_bytes)}.")
        if cleared.kept:
            print(f"desktop-tl: {cleared.kept} file{'s' * (cleared.kept != 1)} in use by another program "
                  "could not be removed.\n  What to do: close it (a running training) and try again.",
                  file=sys.stderr)
            return 1
        return 0
    files = list_cache_files(folder)
    budget = f"budget {binary_size(budget_bytes())} (DESKTOP_TL_DECODE_CACHE_BUDGET_BYTES sets it)"
    if not files:
        print(f"Decoded-image cache: {folder}\nEmpty; {budget}.")
        return 0
    full, on_disk = sum(f.size for f in files), sum(f.on_disk for f in files)
    print(f"Decoded-image cache: {folder}\n{len(files)} file{'s' * (len(files) != 1)}, "
          f"{binary_size(full)} when full, {binary_size(on_disk)} on disk now; {budget}.")
    print(f"  {'last used':<16}  {'when full':>10}  {'on disk':>10}  file (least recently used first)")
    for f in files:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.used))
        print(f"  {used:<16}  {binary_size(f.size):>10}  {binary_size(f.on_disk):>10}  {f.path.name}")
    return 0


# -- plumbing ----------------------------------------------------------------------------------------
def _progress_printer(label: str) -> Callable[[int, int], None]:
    """Import progress on stderr, every 2 seconds and at the end."""
    return throttled(lambda done, total: print(f"{label}: {done}/{total} files", file=sys.stderr, flush=True), 2.0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="desktop-tl", description="Offline transfer learning for image folders.")
    parser.add_argument("--smoke-test", action="store_true",
                        help="check this installation end to end (window, bundled weights, a tiny training run, "
                             "ONNX export and parity) in a temporary folder, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_training_commands(sub)
    add_deploy_commands(sub)
    add_evaluation_commands(sub)
    add_trial_commands(sub)
    _add_app_commands(sub)
    return parser


def _add_training_commands(sub) -> None:
    """models, import-check, train."""
    from desktop_tl.core.config import SplitConfig, TrainConfig

    p = sub.add_parser("models", help="list the model catalog with offline weight availability")
    p.add_argument("--search", help="search every timm architecture by name (wildcards allowed)")
    p.add_argument("--all", action="store_true", help="list every timm architecture, not just the shortlist")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("import-check", help="check a dataset: classes, splits, skipped files, duplicates")
    p.add_argument("data", help="folder with one subfolder per class, or a CSV/TSV of path,label[,group]")
    add_setting_options(p, SplitConfig)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_import_check)

    p = sub.add_parser("train", help="fine-tune a pretrained model on a dataset")
    p.add_argument("data", help="dataset folder or CSV (ignored with --resume on an existing run)")
    p.add_argument("--out", required=True, help="run folder for checkpoints, metrics and exports")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out to its planned total")
    add_setting_options(p, TrainConfig)
    add_setting_options(p, SplitConfig)
    p.set_defaults(func=cmd_train)


def _add_app_commands(sub) -> None:
    """demo, cache."""
    p = sub.add_parser("demo", help="fine-tune the bundled model on the shipped demo images and export it")
    p.add_argument("--out", help=f"run folder (default: a new {DEMO_RUNS}/demo-DATE-TIME folder)")
    p.add_argument("--budget", default="quick", metavar="quick|balanced|best|DURATION",
                   help="time the automatic recipe may take at most (default quick: 2 minutes)")
    p.add_argument("--no-window", dest="window", action="store_false",
                   help="do not open the window at the end, even where a display exists")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("cache", help="show the decoded-image cache's files and sizes, or remove them")
    p.add_argument("action", nargs="?", choices=["info", "clear"], default="info",
                   help="info (default): files, sizes and the budget; clear: remove every cache file "
                        "(rebuilt as needed by later runs)")
    p.set_defaults(func=cmd_cache)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `desktop-tl` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoke_test:
        from desktop_tl.smoke import run_smoke_test

        return run_smoke_test()
    if not getattr(args, "func", None):
        from desktop_tl.gui.shell.app import run_app  # no command: open the window

        return run_app()
    try:
        return args.func(args)
    except UserError as exc:
        _print_error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
