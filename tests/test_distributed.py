"""`desktop-tl train` under torchrun: two gloo ranks on CPU train exactly like one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_tl.core.runs import checkpoint

TRAIN_ARGS = ["--epochs", "1", "--batch-size", "8", "--image-size", "64", "--workers", "0", "--augment", "none",
              "--freeze", "head", "--no-feature-cache", "--no-decode-cache"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)   # keeps the DESKTOP_TL_* folders of the test session
    env["OMP_NUM_THREADS"] = "1"
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


# `desktop-tl train` in which rank 1 runs out of memory once, in the middle of its first step (after
# the ranks agreed on the global batch size): it must retry alone, with smaller chunks, and the run
# must neither hang nor change its result.
OOM_ON_RANK_1 = """
import os, sys, torch
sys.path.insert(0, {root!r})
if os.environ["RANK"] == "1":
    real_forward, armed = torch.nn.CrossEntropyLoss.forward, [True]
    def forward(self, logits, target):
        if armed[0] and logits.requires_grad:
            armed[0] = False
            print("rank 1: simulated out of memory", file=sys.stderr, flush=True)
            raise torch.OutOfMemoryError("out of memory (simulated on rank 1)")
        return real_forward(self, logits, target)
    torch.nn.CrossEntropyLoss.forward = forward
from desktop_tl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_torchrun_two_ranks_match_one_process_even_after_one_rank_runs_out_of_memory(small_dataset, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    launcher = tmp_path / "train_oom_on_rank_1.py"
    launcher.write_text(OOM_ON_RANK_1.format(root=str(Path(__file__).resolve().parents[1])))
    _run([sys.executable, "-m", "desktop_tl", "train", str(small_dataset), "--out", str(single), *TRAIN_ARGS])
    done = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                 "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                 str(launcher), "train", str(small_dataset), "--out", str(multi), *TRAIN_ARGS])

    assert "rank 1: simulated out of memory" in done.stderr
    # rank 0 alone prints progress and the final metrics
    assert done.stdout.count("Training ") == 1, done.stdout
    assert done.stdout.count("Epoch 1/1: train loss") == 1, done.stdout
    for name in (checkpoint.LAST, checkpoint.BEST, "metrics.json", "run.json"):
        assert (multi / name).is_file(), name
    assert json.loads((multi / "run.json").read_text())["status"] == "finished"

    one = checkpoint.load_checkpoint(single / checkpoint.LAST)
    two = checkpoint.load_checkpoint(multi / checkpoint.LAST)
    assert one.model.keys() == two.model.keys()
    worst = max(float((one.model[k].double() - two.model[k].double()).abs().max()) for k in one.model
                if one.model[k].is_floating_point())
    assert worst <= 1e-4, worst
    # the epoch's figures are global ones: same as the single process
    h1, h2 = one.meta["history"][0], two.meta["history"][0]
    assert h1["train_loss"] == pytest.approx(h2["train_loss"], abs=1e-4)
    assert h1["train_accuracy"] == pytest.approx(h2["train_accuracy"])
    assert h1["val_loss"] == pytest.approx(h2["val_loss"], abs=1e-4)
    assert one.meta["step"] == two.meta["step"]
