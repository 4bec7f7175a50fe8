"""The window's engine worker survives 50 start/stop cycles of a training job: no leaked threads,
the single engine thread stays alive, and memory stays bounded."""

from __future__ import annotations

import gc
import os
import threading

import pytest

worker = pytest.importorskip("desktop_tl.gui.worker")
pytest.importorskip("pytestqt")

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.events import BatchProgress, Finished
from desktop_tl.core.runs.folder import create_run
from desktop_tl.core.training.run import train_run

from rel_support import copy_demo

CYCLES = 50
RSS_GROWTH_LIMIT = 200 * 2**20


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_fifty_start_stop_cycles(qtbot, tmp_path):
    # Garbage left by earlier tests (Qt objects in reference cycles) is collected here, on the main thread: a
    # collection that the engine thread's allocations trigger would destroy them on that thread and deadlock on
    # the GIL inside Qt (seen once in CI: the engine thread stuck in QObject::~QObject).
    gc.collect()
    data = tmp_path / "data"
    copy_demo(data, 4, ("brick", "coins"))
    run = tmp_path / "run"
    config = TrainConfig(recipe="custom", epochs=50, batch_size=2, image_size=32, num_workers=0, augment="light", weights="none",
                         model="test_efficientnet")  # a tiny timm test net: the cycles, not the model, are tested
    create_run(run, data, config, SplitConfig(val_fraction=0.25, test_fraction=0.25))

    controller = worker.EngineController()
    engine_thread = controller.thread
    results, failures, events = [], [], []
    controller.sig_result.connect(lambda kind, result: results.append(result))
    controller.sig_failed.connect(lambda kind, failed: failures.append(failed))
    controller.sig_event.connect(events.append)

    def job(context):
        last = None
        for event in train_run(run, context.control):
            context.event(event)
            last = event
        return last

    def cycle(n: int) -> None:
        events.clear()
        assert controller.submit("train", job)
        if n % 5 == 4:  # every fifth cycle: stop once a batch has really trained
            qtbot.waitUntil(lambda: any(isinstance(e, BatchProgress) for e in events), timeout=60_000)
        controller.stop()
        qtbot.waitUntil(lambda: not controller.busy, timeout=60_000)

    try:
        for n in range(3):  # warm-up: first model build, lazy imports, thread pools
            cycle(n)
        threads, os_threads, rss = threading.active_count(), _os_threads(), _rss()
        for n in range(CYCLES):
            cycle(n)
            assert engine_thread.isRunning() and controller.thread is engine_thread
        grown = _rss() - rss
        assert threading.active_count() == threads
        assert _os_threads() <= os_threads + 2, (os_threads, _os_threads())
        assert grown < RSS_GROWTH_LIMIT, f"RSS grew by {grown / 2**20:.0f} MB over {CYCLES} cycles"
        assert not failures, failures[:3]
        assert len(results) == CYCLES + 3
        assert all(isinstance(r, Finished) and r.stopped_by_user for r in results if r is not None)
        # the cycles stopped once a batch had trained end as runs stopped by the user, each of them
        trained = [results[3 + n] for n in range(CYCLES) if n % 5 == 4]
        assert trained and all(isinstance(r, Finished) and r.stopped_by_user for r in trained)
    finally:
        assert controller.shutdown()
    assert not engine_thread.isRunning()
    print(f"{CYCLES} cycles: threads {threads} -> {threading.active_count()}, OS threads {os_threads} -> "
          f"{_os_threads()}, RSS +{grown / 2**20:.1f} MB")
