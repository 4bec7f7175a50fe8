"""Training threads on a shared CPU: the cores other programs leave, measured before every epoch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.events import Finished, Message
from desktop_tl.core.runs.folder import create_run
from desktop_tl.core.training import cpu_share
from desktop_tl.core.training.cpu_share import ThreadShare, others_busy_cores, threads_to_use
from desktop_tl.core.training.run import train_run


@pytest.fixture
def fixed_threads():
    """Here the thread share itself is under test (conftest keeps threads fixed everywhere else)."""


def test_the_threads_are_the_cores_others_leave_free():
    assert threads_to_use(cores=2, most=2, others_busy=0.1) == 2
    assert threads_to_use(cores=2, most=2, others_busy=0.9) == 1
    assert threads_to_use(cores=2, most=2, others_busy=3.0) == 1        # never fewer than one
    assert threads_to_use(cores=16, most=8, others_busy=4.0) == 8       # never more than torch started with
    assert threads_to_use(cores=16, most=16, others_busy=4.4) == 12


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="measured from /proc/stat")
def test_a_busy_process_is_seen_and_training_gives_way_then_takes_the_threads_back(monkeypatch):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seen = others_busy_cores(0.5)
    finally:
        busy.kill()
        busy.wait()
    assert seen is not None and seen >= 0.6                             # one core, give or take the scheduler
    original = torch.get_num_threads()
    share = ThreadShare(enabled=True)
    share.most, share.cores = 2, 2
    monkeypatch.setattr(cpu_share, "others_busy_cores", lambda: 1.0)
    try:
        assert "training uses 1 thread instead of 2" in share.adjust() and torch.get_num_threads() == 1
        assert share.adjust() is None                                    # unchanged: nothing to say
        monkeypatch.setattr(cpu_share, "others_busy_cores", lambda: 0.0)
        assert "free again" in share.adjust() and torch.get_num_threads() == 2
        share.restore()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)
    assert not ThreadShare(enabled=False).adjust()


def test_a_run_measures_before_every_epoch_says_so_and_gives_the_threads_back(tmp_path, small_dataset, monkeypatch):
    calls = []

    def busy_neighbour(share):
        calls.append(torch.get_num_threads())
        return "Other programs keep about 1.0 of the 2 cores busy: training uses 1 thread instead of 2."

    restored = []
    monkeypatch.setattr(ThreadShare, "adjust", busy_neighbour)
    monkeypatch.setattr(ThreadShare, "restore", lambda share: restored.append(True))
    run = tmp_path / "run"
    create_run(run, small_dataset, TrainConfig(recipe="custom", epochs=2, batch_size=8, image_size=64,
                                               num_workers=0, freeze="head"), SplitConfig())
    events = list(train_run(run))
    assert isinstance(events[-1], Finished) and events[-1].completed
    assert len(calls) == 2 and restored == [True]
    notes = [e for e in events if isinstance(e, Message) and "training uses 1 thread" in e.text]
    assert len(notes) == 2
