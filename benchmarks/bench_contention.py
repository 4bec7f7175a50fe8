"""Training steps on a busy CPU: torch's OpenMP wait policy, idle machine vs one competing busy process.

With as many torch threads as cores, OpenMP threads that spin while they wait lose badly when another
process takes a core. This times EfficientNet-Lite0 training steps (64 px, batch 32, channels-last, torch's
default threads) in fresh processes under the default policy, `OMP_WAIT_POLICY=PASSIVE`, a short
`GOMP_SPINCOUNT` and one thread instead of one per core, first on an otherwise idle machine, then next to one process that keeps a core busy.
Run: python benchmarks/bench_contention.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common import machine

STEP = rf"""
import sys, torch, timm
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from common import training_step_seconds
torch.manual_seed(0)
model = timm.create_model("efficientnet_lite0", num_classes=4).to(memory_format=torch.channels_last)
x = torch.randn(32, 3, 64, 64).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 4, (32,))
seconds = sorted(training_step_seconds(model, x, y, 12)[2:])
print(seconds[len(seconds) // 2])
"""
POLICIES = {"default": {}, "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"}, "one thread": {"OMP_NUM_THREADS": "1"}}


def median_step_ms(extra_env: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(extra_env)
    done = subprocess.run([sys.executable, "-c", STEP], env=env, capture_output=True, text=True, check=True)
    return 1000 * float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    print(machine(), "| median of 10 training steps, fresh process per figure")
    for situation in ("idle machine", "one busy process"):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if situation != "idle machine" else None
        try:
            figures = {name: median_step_ms(env) for name, env in POLICIES.items()}
        finally:
            if busy:
                busy.kill()
                busy.wait()
        print(f"{situation}: " + " | ".join(f"{name} {ms:.0f} ms" for name, ms in figures.items()), flush=True)


if __name__ == "__main__":
    main()
