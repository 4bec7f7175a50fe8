"""GPU training throughput: synthetic versus real data through the engine, and an MFU estimate.

For resnet50 and efficientnet_lite0 at 224 px with bf16 autocast and channels_last:
- synthetic: random images already on the GPU, plain forward/backward/AdamW steps (the ceiling);
- real: `desktop_tl` training (full fine-tune, light augmentation, decode cache, default loader
  workers) on the demo images replicated into a temporary folder, epoch 2 (epoch 1 fills the cache);
- real / synthetic (target >= 0.9) and MFU = model FLOPs per image (FlopCounterMode, forward +
  backward) x images/s / the device's dense bf16 peak.
Exits cleanly with a message when no CUDA device is present. Run: python benchmarks/gpu_bench.py
"""

from __future__ import annotations

import argparse
import sys
import time

PEAK_BF16_DENSE = {  # TFLOP/s, dense (no sparsity)
    "H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
    "H100": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "A10G": 70.0, "A10": 125.0, "L40S": 362.0,
    "L40": 181.0, "L4": 121.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0,
}


def peak_tflops(name: str) -> float | None:
    for key in sorted(PEAK_BF16_DENSE, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_DENSE[key]
    return None


def train_flops_per_image(model, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(8, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter, torch.autocast("cuda", dtype=torch.bfloat16):
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 8


def synthetic(name: str, batch: int, size: int, steps: int) -> tuple[float, float]:
    import timm
    import torch

    model = timm.create_model(name, pretrained=False, num_classes=4).cuda().to(memory_format=torch.channels_last)
    model.train()
    flops = train_flops_per_image(model, size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch,), device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()
    for i in range(steps + 10):
        if i == 10:
            torch.cuda.synchronize()
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started), flops


def real(name: str, batch: int, size: int, copies: int, base) -> float:
    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.runs.folder import create_run, load_index
    from desktop_tl.core.training.run import train_run

    from common import epoch_train_seconds, replicated_dataset

    data = base / "data"
    if not data.exists():
        replicated_dataset(data, copies)
    run = base / f"run_{name}"
    weights = "bundled" if name == "efficientnet_lite0" else "none"
    config = TrainConfig(recipe="custom", model=name, weights=weights, epochs=2, batch_size=batch, image_size=size, freeze="all",
                         augment="light", device="cuda")
    create_run(run, data, config, SplitConfig(val_fraction=0.05, test_fraction=0.05, seed=0))
    seconds, _ = epoch_train_seconds(train_run(run))
    return len(load_index(run).split("train")) / seconds[2]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=40, help="variants of each of the 144 demo images")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_bench: PyTorch is not installed; nothing to measure.")
        return 0
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device on this machine; run it on a GPU machine. Nothing was measured.")
        return 0
    from common import isolated_cache, machine

    base = isolated_cache()
    device = torch.cuda.get_device_name(0)
    peak = peak_tflops(device)
    print(machine(), f"| {device} | bf16 dense peak {peak or 'unknown'} TFLOP/s")
    for name, batch in (("resnet50", 128), ("efficientnet_lite0", 128)):
        synth, flops = synthetic(name, batch, 224, args.steps)
        torch.cuda.empty_cache()
        got = real(name, batch, 224, args.copies, base)
        mfu = lambda rate: f"{flops * rate / (peak * 1e12):.1%}" if peak else "n/a"
        print(f"{name} @224 batch {batch}: synthetic {synth:.0f} img/s (MFU {mfu(synth)}), real data through the "
              f"engine {got:.0f} img/s (MFU {mfu(got)}), real/synthetic {got / synth:.2f} (target >= 0.9); "
              f"{flops / 1e9:.1f} GFLOP per image (fwd+bwd)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
