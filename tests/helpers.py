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

