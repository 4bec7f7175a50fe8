"""Fork server for the SIGKILL test: pay the torch import once, then train in forked children.

Run as `python kill_server.py`. Each stdin line `go DELAY LOG ARGV-JSON` forks a child that runs
`desktop_tl.cli.main(ARGV)` (a real, separate training process, output appended to LOG); the
server SIGKILLs it DELAY seconds after training started (after -DELAY seconds from the fork when
DELAY is negative) unless it ended first, and answers `killed` or `exited RC`. `quit` ends it.
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


def _count_started(log: str) -> int:
    """How many children have printed the line that opens training."""
    try:
        with open(log, "rb") as fh:
            return fh.read().count(b"Training ")
    except FileNotFoundError:
        return 0


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        _, delay, log, argv = line.rstrip("\n").split(" ", 3)
        started = _count_started(log)
        pid = os.fork()
        if pid == 0:
            run_child(json.loads(argv), log)
        delay = float(delay)
        status = None
        if delay >= 0:  # counted from the moment training starts (machines differ in start-up time)
            limit = time.monotonic() + 120
            while _count_started(log) == started and time.monotonic() < limit:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                status = None
                time.sleep(0.005)
        deadline = time.monotonic() + abs(delay)
        while status is None and time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            status = None
            time.sleep(0.005)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print("killed", flush=True)
        else:
            print(f"exited {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
