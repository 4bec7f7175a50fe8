"""PyTorch datasets and loaders over an imported DatasetIndex."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from desktop_tl.core.dataset import DatasetIndex, Sample
from desktop_tl.core.imageio import ImageLoadError, load_image


class ImageDataset(Dataset):
    """Images of one split; a file that vanished or broke since import yields None (skipped)."""

    def __init__(self, index: DatasetIndex, samples: Sequence[Sample],
                 transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.index = index
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int, int] | None:
        sample = self.samples[item]
        try:
            image = load_image(self.index.abs_path(sample))
        except (ImageLoadError, OSError):
            return None
        return self.transform(image), sample.label, item


def collate_skipping(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Stack the good items; returns (images, labels, item indices, number skipped)."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), skipped
    images, labels, items = zip(*good)
    return torch.stack(images), torch.tensor(labels), torch.tensor(items), skipped


def default_num_workers() -> int:
    """Loader workers sized to the machine: one core stays free for the app itself."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def make_loader(dataset: ImageDataset, batch_size: int, shuffle: bool, seed: int,
                num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose order and worker seeds depend only on `seed`."""
    generator = torch.Generator().manual_seed(seed)
    workers = default_num_workers() if num_workers < 0 else num_workers
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=workers, collate_fn=collate_skipping, pin_memory=pin_memory,
                      persistent_workers=False)
