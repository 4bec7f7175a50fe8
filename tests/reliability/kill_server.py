"""Fork server for the SIGKILL test: pay the torch import once, then train in forked children.

Run as `python kill_server.py`. Each stdin line `go WHEN AMOUNT LOG ARGV-JSON` forks a child that
runs `desktop_tl.cli.main(ARGV)` (a real, separate training process, output appended to LOG) and
SIGKILLs it unless it ended first, answering `killed` or `exited RC`. WHEN/AMOUNT: `start S` kills S
seconds after the fork or as training starts; `train S` S seconds after its "Training ..." line or
as its first epoch ends; `epoch K:F` after its K-th finished epoch plus F times its average epoch
time (so anywhere in the next epoch, saves included); `finish S` only if it runs past S seconds.
Counting in the child's own epochs keeps the kills meaningful on fast, slow or busy machines.
`quit` ends it.
The parent never runs a torch operation, so forking is safe.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import timm  # noqa: F401
import torch  # noqa: F401  (imported once here, inherited by every child)

import desktop_tl.cli
import desktop_tl.core.deploy.export
import desktop_tl.core.models.catalog
import desktop_tl.core.training.run


def run_child(argv: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout.reconfigure(line_buffering=True)
    code = 1
    try:
        code = desktop_tl.cli.main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _count(log: str, marker: bytes | None) -> int:
    """How often `marker` occurs in the children's log (lines that open training or end an epoch)."""
    if marker is None:
        return 0
    try:
        with open(log, "rb") as fh:
            return fh.read().count(marker)
    except FileNotFoundError:
        return 0


MARKERS = {"start": None, "train": b"Training ", "epoch": b": train loss"}
EPOCH_LINE = MARKERS["epoch"]


def _wait(pid: int, until) -> int | None:
    """Poll the child until `until()` is true; its wait status if it ended first, else None."""
    limit = time.monotonic() + 120
    while not until() and time.monotonic() < limit:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.001)
    return None


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        _, when, amount, log, argv = line.rstrip("\n").split(" ", 4)
        epochs_before = _count(log, EPOCH_LINE)
        trained_before = _count(log, MARKERS["train"])
        forked = time.monotonic()
        pid = os.fork()
        if pid == 0:
            run_child(json.loads(argv), log)
        status = None
        cap = None
        if when == "train":  # AMOUNT seconds after the child's "Training ..." line, in its first epoch
            status = _wait(pid, lambda: _count(log, MARKERS["train"]) > trained_before)
            delay = float(amount)
            cap = lambda: _count(log, EPOCH_LINE) > epochs_before
        elif when == "epoch":  # after the child's K-th finished epoch, plus a fraction of an epoch's time
            k, fraction = amount.split(":")
            status = _wait(pid, lambda: _count(log, MARKERS["train"]) > trained_before)
            started = time.monotonic()
            if status is None:
                status = _wait(pid, lambda: _count(log, EPOCH_LINE) - epochs_before >= int(k))
            delay = float(fraction) * (time.monotonic() - started) / int(k)
        elif when == "finish":  # no kill unless it runs past AMOUNT seconds
            delay = float(amount)
        else:  # "start": AMOUNT seconds after the fork, before training starts
            delay = float(amount) - (time.monotonic() - forked)
            cap = lambda: _count(log, MARKERS["train"]) > trained_before
        deadline = time.monotonic() + delay
        if status is None:
            status = _wait(pid, lambda: time.monotonic() >= deadline or (cap is not None and cap()))
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print("killed", flush=True)
        else:
            print(f"exited {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
