"""(4) Training inside the window against the headless engine: images/s, target window/headless >= 0.95.

The same dataset (the demo photos, replicated), the same TrainConfig (EfficientNet-Lite0, bundled weights,
full fine-tune, light augmentation) and the same run layout are trained by:

  headless      `desktop-tl train` as the CLI runs it: `create_run`, then `cli.run_training` (torch's default
                thread count, which the CLI leaves alone), in a fresh process;
  headless@N    the same, with `torch.set_num_threads(compute_threads())` first: the thread count the window
                trains with (`compute_threads()`: torch's default, minus one from 8 cores up), to show where a gap comes from;
  window        a real `MainWindow`, shown (QT_QPA_PLATFORM=offscreen), in a fresh process: the dataset is
                imported through the dataset panel, "Everything" pressed in the layer tree, the training form
                filled in and Start clicked; the Qt event loop runs, the progress bar, log and live curves update.

Each run is its own process, and the systems alternate (headless, headless@N, window, headless, ...), so load
from other work on the machine hits them alike. Throughput is images/s of the training part of each epoch >= 2
(epoch 1 warms up; validation and checkpoints are excluded), timed from the engine's events as they reach the
consumer: the CLI's loop, or `EngineController.sig_event` on the window's GUI thread. Each system's best epoch
over all its runs is reported; the window's event loop responsiveness (largest gap between ticks of a 16 ms
QTimer) is reported too. Nothing touches the network.

Run: python benchmarks/bench_gui_train.py [--epochs 4] [--repeats 2] [--size 128] [--copies 2]
     add --diagnose for window variants (diagnostics, not the product): training with every core as the CLI
     does, without the live curves, and without any handling of the engine's events.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, isolated_cache, machine, replicated_dataset

RESULT = "RESULT "
TICK_MS = 16


def train_config(args: argparse.Namespace):
    from desktop_tl.core.config import TrainConfig

    return TrainConfig(recipe="custom", model="efficientnet_lite0", weights="bundled", freeze="all", epochs=args.epochs,
                       batch_size=args.batch, lr=1e-3, image_size=args.size, augment="light", device="auto")


def split_config():
    from desktop_tl.core.config import SplitConfig

    return SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=0)


def epoch_rates(stamped: list[tuple[float, object]]) -> dict:
    """From (time, event) pairs in arrival order: training seconds of each epoch (from the event before its
    first BatchProgress to its last BatchProgress, like benchmarks/common.engine_epochs), images per epoch."""
    from desktop_tl.core.events import BatchProgress, EpochEnd, RunStarted

    images, seconds, start, end, last = 0, {}, None, None, None
    batches = 0
    for now, event in stamped:
        if isinstance(event, RunStarted):
            images = event.train_images
        if isinstance(event, BatchProgress):
            start = last if start is None else start
            end = now
            batches += 1
        if isinstance(event, EpochEnd):
            seconds[event.epoch] = end - start
            start = None
        last = now
    return {"images": images, "seconds": seconds, "batches": batches}


# -- child processes ------------------------------------------------------------------------------------------
def child_headless(args: argparse.Namespace) -> dict:
    """`desktop-tl train` as the CLI does it, with the engine's events time-stamped as the CLI consumes them."""
    import torch

    from desktop_tl import cli
    from desktop_tl.core.runs.folder import create_run
    from desktop_tl.core.training import run as train

    if args.threads:   # the window's count, passed by the parent (this process imports no GUI module)
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    create_run(Path(args.out), Path(args.data), train_config(args), split_config())
    stamped: list[tuple[float, object]] = []
    original = train.train_run

    def timed_train_run(*a, **k):
        for event in original(*a, **k):
            stamped.append((time.perf_counter(), event))   # the moment the CLI's loop receives it
            yield event

    train.train_run = timed_train_run   # cli.run_training imports it from the module when called
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            status = cli.run_training(Path(args.out))
        finally:
            sys.stdout = stdout
    if status:
        raise SystemExit(f"desktop-tl train ended with status {status}")
    return dict(epoch_rates(stamped), threads=threads)


def child_window(args: argparse.Namespace) -> dict:
    """A shown MainWindow trains through its own panels; the event loop runs throughout."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop_tl.core.events import BatchProgress, EpochEnd
    from desktop_tl.gui.shell.main_window import MainWindow

    variant = set(args.variant.split(","))
    if "all-threads" in variant:
        # diagnostics only: the window training with every logical core (the product uses compute_threads())
        from desktop_tl.core.training import devices

        devices.compute_threads = lambda: os.cpu_count() or 1
    app = QApplication([])  # noqa: F841 - must exist while the window does
    window = MainWindow()
    window.ask_stop_running_job = lambda: True
    window.ask_save_changes = lambda: "discard"
    window.resize(1400, 900)
    window.show()

    def wait(condition, timeout_s: float, what: str) -> None:
        """Run the event loop (not a busy loop) until `condition()` holds."""
        loop, deadline = QEventLoop(), time.monotonic() + timeout_s
        poll = QTimer(interval=50)
        poll.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
        poll.start()
        if not condition():
            loop.exec()
        poll.stop()
        if not condition():
            raise SystemExit(f"window: timed out waiting for {what}")

    wait(lambda: window._engine_views_filled and window.freeze_tree.all_button.isEnabled(), 120, "the engine views")
    split = split_config()
    window.state.set_split(split)
    failures: list[object] = []
    window.controller.sig_failed.connect(lambda kind, failed: failures.append((kind, failed)))
    assert window.dataset_panel.import_path(Path(args.data))
    wait(lambda: (window.state.dataset is not None and not window.controller.busy) or failures, 300, "the import")
    if failures:
        raise SystemExit(f"window: import failed: {failures}")

    window.freeze_tree.all_button.click()              # "Everything": full fine-tune
    monitor = window.training_monitor
    config = train_config(args)
    monitor.epochs.setValue(config.epochs)
    monitor.batch_size.setValue(config.batch_size)
    monitor.lr.setValue(config.lr)
    monitor.image_size.setValue(config.image_size)
    monitor.augment.setCurrentText(config.augment)
    monitor.device.setCurrentIndex(monitor.device.findData(config.device))
    if window.state.config != config or window.state.split != split:
        raise SystemExit(f"window: settings differ from the headless run:\n{window.state.config}\n{config}")
    monitor.set_run_dir(Path(args.out))

    if variant & {"no-plots", "no-events"}:
        # diagnostics only: what the live curves (and the per-event handling) cost the training thread
        monitor.charts.redraw_timer.timeout.disconnect(monitor.charts.flush)
    if "no-events" in variant:
        monitor.jobs.sig_event.disconnect(monitor._on_event)

    stamped: list[tuple[float, object]] = []            # arrival on the GUI thread
    emitted: list[tuple[float, object]] = []            # emission on the worker thread
    window.controller.sig_event.connect(lambda event: stamped.append((time.perf_counter(), event)))
    worker_threads: list[int] = []

    def on_emit(event) -> None:   # runs on the worker thread
        emitted.append((time.perf_counter(), event))
        if not worker_threads:
            import torch

            worker_threads.append(torch.get_num_threads())

    window.controller.worker.sig_event.connect(on_emit, Qt.ConnectionType.DirectConnection)
    ticks: list[float] = []
    ticker = QTimer(interval=TICK_MS)
    ticker.setTimerType(Qt.TimerType.PreciseTimer)
    ticker.timeout.connect(lambda: ticks.append(time.perf_counter()))
    ended: list[object] = []
    loop = QEventLoop()
    for signal in (window.controller.sig_result, window.controller.sig_failed):   # the train job ended
        signal.connect(lambda kind, result: (ended.append(result), loop.quit()) if kind == "train" else None)
    ticker.start()
    started = time.perf_counter()
    monitor.start_button.click()
    if not monitor.active_run:
        raise SystemExit(f"window: training did not start: {monitor.banner.text()}")
    loop.exec()
    finished_at = time.perf_counter()
    ticker.stop()
    from desktop_tl.core.events import Failed

    if not ended or isinstance(ended[0], Failed):
        raise SystemExit(f"window: training failed: {ended}")

    result = epoch_rates(stamped)
    result["worker_seconds"] = epoch_rates(emitted)["seconds"]
    # responsiveness: the whole job, and the training parts of epochs >= 2 only
    first_batch_2 = next(t for t, e in stamped if isinstance(e, BatchProgress) and e.epoch == 2)
    last_batch = max(t for t, e in stamped if isinstance(e, BatchProgress))
    pairs = list(zip(ticks, ticks[1:]))
    gaps = [(b - a) * 1000 for a, b in pairs]
    where = ""
    if pairs:   # what the worker had last sent when the longest gap ended
        a, b = max(pairs, key=lambda pair: pair[1] - pair[0])
        before = [e for t, e in emitted if t <= b]
        last = before[-1] if before else None
        where = ("before the first event" if last is None else f"after {type(last).__name__}"
                 + (f" of epoch {last.epoch}" if hasattr(last, "epoch") else ""))
    in_training = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:]) if a >= first_batch_2 and b <= last_batch]
    gaps.sort()
    result.update(
        threads=worker_threads[0],
        job_seconds=finished_at - started, ticks=len(ticks),
        max_gap_ms=gaps[-1] if gaps else None, max_gap_where=where,
        p99_gap_ms=gaps[int(0.99 * (len(gaps) - 1))] if gaps else None,
        max_gap_training_ms=max(in_training) if in_training else None,
        gaps_over_50ms=sum(g > 50 for g in gaps), gaps_over_100ms=sum(g > 100 for g in gaps),
        points=monitor.point_counts()["batch_loss"], epochs_logged=sum(
            isinstance(e, EpochEnd) for _, e in stamped))
    window.close()
    return result


# -- parent ---------------------------------------------------------------------------------------------------
def run_child(role: str, args: argparse.Namespace, data: Path, out: Path, base: Path, **extra) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", role, "--data", str(data), "--out", str(out),
               "--epochs", str(args.epochs), "--batch", str(args.batch), "--size", str(args.size)]
    for key, value in extra.items():
        command += [f"--{key}", str(value)]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT),
               XDG_CONFIG_HOME=str(base / "config"), HOME=str(base / "home"))   # the user's settings are untouched
    (base / "home").mkdir(exist_ok=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode or not lines:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(f"{role} run failed (exit status {done.returncode})")
    result = json.loads(lines[-1][len(RESULT):])
    result["seconds"] = {int(k): v for k, v in result["seconds"].items()}
    return result


def best_rate(result: dict) -> float:
    return max(result["images"] / s for e, s in result["seconds"].items() if e >= 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (epochs >= 2 are timed)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each system, alternating")
    parser.add_argument("--size", type=int, default=128, help="model input size (px)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--copies", type=int, default=2, help="variants of each of the 144 demo photos")
    parser.add_argument("--diagnose", action="store_true",
                        help="also run window variants: every core for torch (like the CLI), no live curves, "
                             "no handling of the engine's events")
    parser.add_argument("--only", help="comma-separated systems to run, e.g. 'headless,window,window:all-cores'")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is not timed)")

    if args.child:
        result = child_window(args) if args.child == "window" else child_headless(args)
        print(RESULT + json.dumps(result), flush=True)
        os._exit(0)   # the window's teardown is not part of the measurement

    from desktop_tl.core.training.devices import compute_threads

    gui_threads = compute_threads()
    systems = {"headless": ("headless", {}), f"headless@{gui_threads}": ("headless", {"threads": gui_threads}),
               "window": ("window", {}),
               # diagnostics (--diagnose or --only): what the window's thread count, curves and events cost
               "window:all-cores": ("window", {"variant": "all-threads"}),
               "window:all-cores:no-curves": ("window", {"variant": "all-threads,no-plots"}),
               "window:no-curves": ("window", {"variant": "no-plots"}),
               "window:no-events": ("window", {"variant": "no-events"})}
    wanted = ([name.strip() for name in args.only.split(",")] if args.only else
              list(systems) if args.diagnose else list(systems)[:3])
    unknown = [name for name in wanted if name not in systems]
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {list(systems)}")
    systems = {name: systems[name] for name in wanted}
    base = isolated_cache()
    try:
        measure(args, systems, gui_threads, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)   # the dataset copies, caches and run folders


def measure(args: argparse.Namespace, systems: dict, gui_threads: int, base: Path) -> None:
    from desktop_tl.core.data.loaders import default_num_workers

    data = replicated_dataset(base / "data", args.copies)
    print(machine(), f"| window trains with {gui_threads} torch thread(s); {default_num_workers()} loader worker(s) "
          f"in every system | {args.size} px, batch {args.batch}, {args.epochs} epochs, full fine-tune, light "
          f"augmentation | {args.repeats} alternating runs of each system, best epoch >= 2", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in systems}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for name, (role, extra) in systems.items():
            load = os.getloadavg()[0]
            result = run_child(role, args, data, base / f"run_{len(results[name])}_{name.replace(':', '_')}",
                               base, **extra)
            results[name].append(result)
            rates = [round(result["images"] / result["seconds"][e], 1) for e in sorted(result["seconds"])]
            extra_text = ""
            if role == "window":
                worker = [round(result["images"] / result["worker_seconds"][str(e)], 1)
                          for e in sorted(result["seconds"])]
                extra_text = (f" | torch threads {result['threads']} | timed on the worker thread {worker} | "
                              f"event loop: max gap {result['max_gap_ms']:.0f} ms ({result['max_gap_where']}), "
                              f"p99 {result['p99_gap_ms']:.0f} ms, {result['gaps_over_50ms']} gaps > 50 ms "
                              f"({result['ticks']} ticks), max gap while training epochs >= 2 "
                              f"{result['max_gap_training_ms']:.0f} ms")
            else:
                extra_text = f" | torch threads {result['threads']}"
            print(f"  run {repeat + 1} {name}: {result['images']} train images, img/s per epoch {rates}"
                  f"{extra_text} [load {load:.2f} before]", flush=True)

    best = {name: max(best_rate(r) for r in runs) for name, runs in results.items()}
    print("best img/s (epochs >= 2): " + ", ".join(
        f"{name} {rate:.1f} (torch threads {results[name][0]['threads']})" for name, rate in best.items()))
    if not {"headless", f"headless@{gui_threads}", "window"} <= set(best):
        return
    head, same, window = best["headless"], best[f"headless@{gui_threads}"], best["window"]
    gaps = [r["max_gap_ms"] for r in results["window"]]
    verdict = "met" if window / head >= 0.95 else "NOT met"
    print(f"RESULT: window / headless = {window / head:.2f} (target >= 0.95: {verdict}); "
          f"window / headless at the window's {gui_threads} thread(s) = {window / same:.2f}; "
          f"headless@{gui_threads} / headless = {same / head:.2f}; event loop during window training: "
          f"max gap {max(gaps):.0f} ms (16 ms timer) [{time.perf_counter() - started:.0f}s, "
          f"load average {os.getloadavg()[0]:.2f} at the end]")


if __name__ == "__main__":
    main()
