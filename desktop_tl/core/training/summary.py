"""What the automatic recipe looks at in the data: counts per class and split, image size and colour."""

from __future__ import annotations

import numpy as np

from desktop_tl.core.data.imageio import ImageLoadError, load_image
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.training.plan import DataSummary

SAMPLED_IMAGES = 48
GRAY_TOLERANCE = 3        # channel values this close count as equal (JPEG chroma noise)


def summarize_data(index: DatasetIndex, sample: int = SAMPLED_IMAGES) -> DataSummary:
    """Counts from the index; size and colour from up to `sample` training images spread over the split."""
    train = index.split("train")
    counts = [0] * len(index.classes)
    for s in train:
        for label in (s.label,) if s.labels is None else s.labels:
            counts[label] += 1
    step = max(1, len(train) // sample)
    sides, gray = [], True
    for s in train[::step][:sample]:
        try:
            image = load_image(index.abs_path(s))
        except (ImageLoadError, OSError):
            continue
        sides.append(min(image.size))
        if gray:
            pixels = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int16)
            gray = int(np.abs(pixels - pixels[..., :1]).max()) <= GRAY_TOLERANCE
    median = int(np.median(sides)) if sides else 224
    return DataSummary(tuple(counts), len(index.split("val")), len(index.split("test")), median, gray and bool(sides),
                       len(train) if index.multi_label else 0)
