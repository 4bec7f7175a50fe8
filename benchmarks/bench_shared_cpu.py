"""A real fine-tuning run on a shared CPU: the thread policy before and after the adaptive thread share.

Trains the same run (the 144 demo photographs, every layer, 3 epochs at 96 px, custom recipe, seed 0) in a
fresh process per figure, on an otherwise idle machine and next to one process that keeps a core busy, under:
- `fixed threads`: one torch thread per core for the whole run (before; what the command line did);
- `PASSIVE wait`: the same with OMP_WAIT_POLICY=PASSIVE (before; what the window did);
- `threads follow load`: core.training.cpu_share measures the cores other programs keep busy before every
  epoch and trains with the rest (after; both faces).
Prints the training images per second of epochs 2-3 (epoch 1 warms the decode cache).
Run: python benchmarks/bench_shared_cpu.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine

RUN = r"""
import json, sys
from pathlib import Path
from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.events import EpochEnd
from desktop_tl.core.runs.folder import create_run
from desktop_tl.core.training import cpu_share
from desktop_tl.core.training.run import train_run
if sys.argv[2] == "fixed":
    cpu_share.ThreadShare.adjust = lambda self: None
run = Path(sys.argv[1])
create_run(run, Path("resources/demo/images"), TrainConfig(recipe="custom", freeze="all", epochs=3, image_size=96,
           augment="light", batch_size=16, num_workers=0), SplitConfig())
epochs = [e for e in train_run(run) if isinstance(e, EpochEnd)]
print(json.dumps([e.seconds for e in epochs]))
"""
POLICIES = {"fixed threads": ("fixed", {}), "PASSIVE wait": ("fixed", {"OMP_WAIT_POLICY": "PASSIVE"}),
            "threads follow load": ("adaptive", {})}


def images_per_second(mode: str, extra_env: dict[str, str], work: Path, train_images: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")} | extra_env
    run = work / f"run-{len(list(work.iterdir()))}"
    done = subprocess.run([sys.executable, "-c", RUN, str(run), mode], env=env, capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parent.parent)
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    return train_images * 2 / sum(seconds[1:])


def main() -> None:
    from desktop_tl.core.data.importer import import_dataset

    train_images = len(import_dataset(Path(__file__).resolve().parent.parent / "resources/demo/images").split("train"))
    print(machine(), f"| {train_images} training images, 96 px, batch 16, epochs 2-3, fresh process per figure")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["DESKTOP_TL_CACHE_DIR"] = str(Path(folder) / "cache")
        work = Path(folder) / "runs"
        work.mkdir()
        for situation in ("idle machine", "one busy process"):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if situation != "idle machine" else None
            try:
                figures = {name: images_per_second(mode, env, work, train_images)
                           for name, (mode, env) in POLICIES.items()}
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
            print(f"{situation}: " + " | ".join(f"{name} {ips:.1f} img/s" for name, ips in figures.items()),
                  flush=True)


if __name__ == "__main__":
    main()
