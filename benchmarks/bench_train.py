"""(1) Full fine-tune throughput: the engine versus a plain hand-written timm + torchvision ImageFolder loop.

Same images, model (EfficientNet-Lite0, bundled weights), batch size, optimizer (AdamW), augmentation
(RandomResizedCrop + horizontal flip) and loader workers. Images per second of the training part of
epoch 2 (epoch 1 warms up and, for the engine, fills the decode cache). Run: python benchmarks/bench_train.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import Timer, engine_epochs, interleave, isolated_cache, machine, replicated_dataset

SPLIT = None


def engine(data: Path, out: Path, size: int, batch: int, epochs: int, decode_cache: bool, workers: int):
    from desktop_tl.core.config import TrainConfig
    from desktop_tl.core.runs.folder import create_run
    from desktop_tl.core.training.run import train_run

    config = TrainConfig(recipe="custom", epochs=epochs, batch_size=batch, image_size=size, freeze="all", augment="light", lr=1e-3,
                         num_workers=workers, decode_cache=decode_cache, label_smoothing=0.0)
    create_run(out, data, config, SPLIT)
    return engine_epochs(train_run(out))


def plain(data: Path, size: int, batch: int, epochs: int, workers: int, items: list[int]):
    """What a user would write by hand: ImageFolder, torchvision transforms, timm, an AdamW loop."""
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from desktop_tl.core.models.factory import create_model
    from desktop_tl.core.models.structure import data_config

    model, _ = create_model("efficientnet_lite0", "bundled", 4)
    cfg = data_config(model)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.6, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(cfg["mean"], cfg["std"])])
    dataset = Subset(datasets.ImageFolder(str(data), tf), items)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        yield time.perf_counter() - started


def main() -> None:
    global SPLIT
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=-1)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from desktop_tl.core.config import SplitConfig
    from desktop_tl.core.data.importer import import_dataset
    from desktop_tl.core.data.loaders import default_num_workers

    SPLIT = SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=0)
    workers = default_num_workers() if args.workers < 0 else args.workers
    base = isolated_cache()
    print(machine(), f"| loader workers {workers} | systems interleaved epoch by epoch, best epoch >= 2 of each")
    cases = [  # (label, source side, copies, images per class, model input size, batch)
        ("224 px input, 144 px demo photos", None, 1, 16, 224, 16),
        ("64 px input, 144 px demo photos", None, 3, None, 64, 32),
        ("64 px input, 640 px photos", 640, 1, None, 64, 32),
    ]
    for label, side, copies, per_class, size, batch in cases:
        data = replicated_dataset(base / f"data_{size}_{side}", copies, side, per_class)
        index = import_dataset(data, SPLIT)
        from torchvision import datasets

        order = {Path(p).relative_to(data).as_posix(): i for i, (p, _) in enumerate(datasets.ImageFolder(str(data)).samples)}
        items = [order[s.path] for s in index.split("train")]   # the engine's training images
        with Timer() as t:
            times = interleave({
                "hand": plain(data, size, batch, args.epochs, workers, items),
                "engine": engine(data, base / f"run_{size}_{side}_u", size, batch, args.epochs, False, workers),
                "engine+cache": engine(data, base / f"run_{size}_{side}_c", size, batch, args.epochs, True, workers),
            }, args.epochs)
        rate = {k: len(items) / min(v[1:]) for k, v in times.items()}
        print(f"{label}: {len(items)} train images, batch {batch} | hand-written loop {rate['hand']:.1f} img/s | "
              f"engine without decode cache {rate['engine']:.1f} img/s (x{rate['engine'] / rate['hand']:.2f}) | "
              f"engine with decode cache {rate['engine+cache']:.1f} img/s (x{rate['engine+cache'] / rate['hand']:.2f})"
              f" [{t.seconds:.0f}s; epoch seconds {dict((k, [round(x, 1) for x in v]) for k, v in times.items())}]",
              flush=True)


if __name__ == "__main__":
    main()
