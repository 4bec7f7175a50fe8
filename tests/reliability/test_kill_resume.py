"""SIGKILL the training process at random moments, many times: the last complete checkpoint always
loads, a half-written temp file is never taken for a checkpoint, no finished epoch is lost, and
--resume carries the run to completion."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.events import Finished
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import METRICS_FILE, create_run, load_index, open_run
from desktop_tl.core.training.run import train_run

from rel_support import copy_demo

EPOCHS = 120
KILLS = 8
# train.py saves best.safetensors before last.safetensors (last is the commit point of resume). In the
# other order a kill between the two left last naming a best epoch that best.safetensors did not hold,
# and a run whose later epochs never improved could not complete at all.


class KillServer:
    """The fork server of kill_server.py, driven over its stdin and stdout."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("kill_server.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd,
                                     env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, argv: list[str], when: str, amount: str, log: Path) -> str:
        self.proc.stdin.write(f"go {when} {amount} {log} {json.dumps(argv)}\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _check_run_folder(run: Path, floor: int) -> tuple[int, bool]:
    """Invariants after a kill; returns (epoch of last.safetensors or 0, best consistent with last)."""
    names = {p.name for p in run.glob("*.safetensors")}
    assert names <= {checkpoint.LAST, checkpoint.BEST}, names  # temp files never look like checkpoints
    if (run / "run.json").is_file():
        open_run(run)
        load_index(run)
    if not (run / checkpoint.LAST).is_file():
        assert floor == 0, "a finished epoch was lost"
        return 0, True
    last = checkpoint.load_checkpoint(run / checkpoint.LAST)  # always complete and loadable
    epoch = last.meta["epoch"]
    assert epoch >= floor, f"last.safetensors went back from epoch {floor} to {epoch}"
    assert [h["epoch"] for h in last.meta["history"]] == list(range(1, epoch + 1))
    assert last.optimizer is not None and last.model
    # best.safetensors holds the best epoch last names, or (killed between the two writes of an epoch:
    # best is written first) the epoch after last's, which resume recomputes identically and saves again.
    best_epoch = checkpoint.read_meta(run / checkpoint.BEST)["epoch"] if (run / checkpoint.BEST).is_file() else None
    consistent = best_epoch in (last.meta["best_epoch"], epoch + 1)
    return epoch, consistent


def test_random_sigkills_lose_no_finished_epoch(tmp_path):
    data = tmp_path / "data"
    copy_demo(data, 8, ("brick", "coins"))
    run = tmp_path / "run"
    # The tiny timm test network trains an epoch in milliseconds, so most of a child's time after
    # start-up goes into checkpoint writes: the kills land in them often.
    argv = ["train", str(data), "--out", str(run), "--resume", "--model", "test_efficientnet", "--weights", "none",
            "--epochs", str(EPOCHS), "--batch-size", "4",
            "--image-size", "32", "--workers", "0", "--augment", "none", "--val-fraction", "0.25",
            "--test-fraction", "0.25"]
    seed = int(os.environ.get("DESKTOP_TL_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    log = tmp_path / "children.log"
    server = KillServer(tmp_path)
    epochs_seen, outcomes, torn_saves = [], [], 0
    try:
        floor = 0
        for _ in range(KILLS):
            # Mostly after the child finished an epoch (so there is work to lose), some while its first
            # epoch runs, some during start-up and import.
            when = rng.choices(["epoch", "train", "start"], weights=[6, 2, 2])[0]
            amount = {"epoch": f"{rng.randint(1, 6)}:{rng.uniform(0.0, 1.2):.3f}",
                      "train": f"{rng.uniform(0.0, 2.0):.3f}", "start": f"{rng.uniform(0.05, 3.0):.3f}"}[when]
            outcome = server.run(argv, when, amount, log)
            outcomes.append(outcome)
            torn_saves += any(run.glob(".*.safetensors.*.tmp"))  # the kill hit a checkpoint write
            floor, consistent = _check_run_folder(run, floor)
            assert consistent or floor == 0, f"best.safetensors lacks the best epoch last names (seed {seed}, {epochs_seen})"
            epochs_seen.append(floor)
            if outcome != "killed":
                break
        final = server.run(argv, "finish", "600", log)
    finally:
        server.close()
    context = (f"seed {seed} (rerun with DESKTOP_TL_KILL_SEED={seed}); outcomes {outcomes}; epochs after each "
               f"kill {epochs_seen}; kills during a checkpoint write: {torn_saves}")
    print(context)
    assert final == "exited 0", f"{final}; {context}; log tail: {log.read_text()[-2000:]}"
    assert outcomes.count("killed") == KILLS, context
    assert max(epochs_seen) >= 2, f"no kill came after finished epochs: {context}"
    info = open_run(run)
    assert info.finished, context
    epoch, consistent = _check_run_folder(run, floor)
    assert epoch == EPOCHS, context
    metrics = json.loads((run / METRICS_FILE).read_text())
    assert metrics["best_epoch"] == checkpoint.read_meta(run / checkpoint.BEST)["epoch"], context
    assert not list(run.glob(".*.tmp")), "half-written files of killed saves were left behind"


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


def test_kill_between_the_two_checkpoint_writes_of_an_epoch(tmp_path, monkeypatch):
    """Deterministic version of the most delicate moment: epoch 1 is best, and the process dies after
    the first of its two checkpoint files is saved, before the second (whichever order train.py uses)."""
    data = tmp_path / "data"
    copy_demo(data, 5, ("brick", "coins"))
    run = tmp_path / "run"
    # A learning rate far too small to change any weight: later epochs cannot beat epoch 1.
    config = TrainConfig(recipe="custom", epochs=2, batch_size=4, image_size=32, num_workers=0, augment="none", lr=1e-12,
                         model="test_efficientnet", weights="none")
    create_run(run, data, config, SplitConfig(val_fraction=0.25, test_fraction=0.2))
    real_save = checkpoint.save_checkpoint
    saved = []

    def save_then_die(path, *args, **kwargs):
        if saved:
            raise _Killed
        real_save(path, *args, **kwargs)
        saved.append(path.name)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save_checkpoint", save_then_die)
        with pytest.raises(_Killed):
            list(train_run(run))
    assert saved in ([checkpoint.LAST], [checkpoint.BEST])
    final = list(train_run(run))[-1]
    assert isinstance(final, Finished) and final.completed, final
    metrics = json.loads((run / METRICS_FILE).read_text())
    assert metrics["best_epoch"] == 1
    assert checkpoint.read_meta(run / checkpoint.BEST)["epoch"] == metrics["best_epoch"]
