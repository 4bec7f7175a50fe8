"""Helpers shared by the tests (importable as `helpers`)."""

from __future__ import annotations

import shutil
from pathlib import Path

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "resources" / "demo" / "images"


def copy_demo_subset(target: Path, per_class: int, classes: tuple[str, ...] = ()) -> Path:
    """A small real-image dataset: the first `per_class` demo images of each (chosen) class."""
    for class_dir in sorted(DEMO_IMAGES.iterdir()):
        if not class_dir.is_dir() or (classes and class_dir.name not in classes):
            continue
        (target / class_dir.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.glob("*.jpg"))[:per_class]:
            shutil.copy(image, target / class_dir.name / image.name)
    return target


def train_until_saved(run_dir: Path, epoch: int = 1) -> list:
    """Train the run in `run_dir` and press Stop once `epoch` is saved, as a user would; the events."""
    from desktop_tl.core.events import CheckpointSaved
    from desktop_tl.core.training.run import RunControl, train_run

    control = RunControl()
    events = []
    for event in train_run(run_dir, control):
        events.append(event)
        if isinstance(event, CheckpointSaved) and event.epoch == epoch:
            control.stop()
    return events


def planted_inspection_result() -> dict:
    """The case a user met: 82% accuracy while the positive class is found 97 times out of 205."""
    import numpy as np

    from desktop_tl.core.evaluation.metrics import compute_metrics

    labels = np.array([0] * 395 + [1] * 205)
    found = np.array([False] * 395 + [True] * 97 + [False] * 108)
    probs = np.where(found[:, None], [[0.2, 0.8]], [[0.8, 0.2]])
    return compute_metrics(labels, probs, ["good", "defective"])



MATERIALS = ("brick", "coins", "grass", "gravel")


def write_mosaics(folder: Path, count: int, tile: int = 32, seed: int = 0) -> Path:
    """A real multi-label set: `count` 2x2 mosaics of the demo photographs, each showing 1 to 3 of the four
    materials (a material's tiles are crops of its own photos), listed in `folder/labels.csv` as path,labels."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    photos = {m: sorted((DEMO_IMAGES / m).glob("*.jpg")) for m in MATERIALS}
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,labels"]
    for i in range(count):
        shown = sorted(rng.sample(MATERIALS, rng.choice((1, 2, 3))))
        tiles = shown + [rng.choice(shown) for _ in range(4 - len(shown))]
        rng.shuffle(tiles)
        mosaic = Image.new("RGB", (2 * tile, 2 * tile))
        for k, material in enumerate(tiles):
            with Image.open(rng.choice(photos[material])) as photo:
                photo = photo.convert("RGB")
                left, top = rng.randrange(photo.width - tile), rng.randrange(photo.height - tile)
                mosaic.paste(photo.crop((left, top, left + tile, top + tile)), ((k % 2) * tile, (k // 2) * tile))
        mosaic.save(folder / f"mosaic_{i:03d}.png")
        rows.append(f"mosaic_{i:03d}.png,{';'.join(shown)}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "labels.csv"
