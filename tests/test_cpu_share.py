"""Training threads on a shared CPU: the cores other programs leave, measured before every epoch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from desktop_tl.core.training import cpu_share
from desktop_tl.core.training.cpu_share import ThreadShare, others_busy_cores, threads_to_use


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
