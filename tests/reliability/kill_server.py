"""Fork server for the SIGKILL test: pay the torch import once, then train in forked children.

Run as `python kill_server.py`. Each stdin line `go WHEN DELAY LOG ARGV-JSON` forks a child that
runs `desktop_tl.cli.main(ARGV)` (a real, separate training process, output appended to LOG); the
server SIGKILLs it DELAY seconds after WHEN (`start`: the fork, `train`: its "Training ..." line,
`epoch`: its first finished epoch) unless it ended first, and answers `killed` or `exited RC`.
Counting from the child's own progress keeps the kills meaningful on slow or busy machines.
`quit` ends it.
The parent never runs a torch operation, so forking is safe.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import torch  # noqa: F401  (imported once here, inherited by every child)
import timm  # noqa: F401

import desktop_tl.cli
import desktop_tl.core.catalog  # noqa: F401
import desktop_tl.core.export  # noqa: F401
import desktop_tl.core.train  # noqa: F401


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


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        _, when, delay, log, argv = line.rstrip("\n").split(" ", 4)
        marker = MARKERS[when]
        seen = _count(log, marker)
        pid = os.fork()
        if pid == 0:
            run_child(json.loads(argv), log)
        status = None
        if marker is not None:  # the delay counts from this child's next marker line
            limit = time.monotonic() + 120
            while _count(log, marker) == seen and time.monotonic() < limit:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                status = None
                time.sleep(0.002)
        deadline = time.monotonic() + float(delay)
        while status is None and time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            status = None
            time.sleep(0.002)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print("killed", flush=True)
        else:
            print(f"exited {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
