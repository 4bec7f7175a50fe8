"""CPU memory layout: channels-last against the standard (contiguous) layout, per model and input size.

Training steps (forward, backward, AdamW) on random images, both layouts side by side in one run, best of 4
steps after a warm-up. Shows why `core/tuning.py` measures the layout per model instead of always using
channels-last: most CNNs gain, some lose. Run: python benchmarks/bench_layout.py
"""

from __future__ import annotations

import timm
import torch

from common import machine, training_step_seconds

MODELS = ["efficientnet_lite0", "mobilenetv3_large_100", "resnet18", "resnet50", "efficientnet_b0",
          "convnext_nano", "regnety_008", "vit_small_patch16_224"]


def images_per_second(name: str, size: int, batch: int, channels_last: bool) -> float:
    torch.manual_seed(0)
    extra = {"img_size": size} if name.startswith("vit") else {}
    model = timm.create_model(name, pretrained=False, num_classes=4, **extra)
    inputs, labels = torch.randn(batch, 3, size, size), torch.randint(0, 4, (batch,))
    if channels_last:
        model, inputs = model.to(memory_format=torch.channels_last), inputs.contiguous(memory_format=torch.channels_last)
    return batch / min(training_step_seconds(model, inputs, labels, 5)[1:])


def main() -> None:
    print(machine())
    for name in MODELS:
        for size, batch in ((64, 32), (224, 16)):
            plain, last = (images_per_second(name, size, batch, cl) for cl in (False, True))
            print(f"{name:24s} {size:4d} px  contiguous {plain:6.1f} img/s  channels-last {last:6.1f} img/s  "
                  f"x{last / plain:.2f}", flush=True)


if __name__ == "__main__":
    main()
