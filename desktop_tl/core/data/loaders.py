"""PyTorch datasets and loaders over an imported DatasetIndex.

Order and augmentation depend only on (seed, epoch, item): the batch sampler draws the order from
the epoch's seed and hands every item its own augmentation seed, so results do not depend on the
number of loader workers, on whether they persist between epochs, or on how many processes share
a global batch (distributed training gives each rank a slice of the same global batch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from desktop_tl.core.data.decode_cache import DecodeCache, decode_entry, eval_array
from desktop_tl.core.data.imageio import ImageLoadError, load_image
from desktop_tl.core.data.index import DatasetIndex, Sample
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.data.transforms import LIGHT, CachedCropFlipAugment, CropFlip, train_transform


def sample_target(index: DatasetIndex, sample: Sample) -> int | torch.Tensor:
    """What the model learns of a sample: its class, or for a multi-label dataset a 0/1 vector over the labels."""
    if sample.labels is None:
        return sample.label
    target = torch.zeros(len(index.classes))
    target[list(sample.labels)] = 1.0
    return target


class ImageDataset(Dataset):
    """Images of one split; a file that vanished or broke since import yields None (skipped).

    With a `DecodeCache` (and `prep`), images come from the cache after their first decode and
    `cached_transform` turns the uint8 entry into the tensor; see `cached_dataset`.
    An item is an index, or (index, seed) to seed the augmentation of that one item.
    """

    def __init__(self, index: DatasetIndex, samples: Sequence[Sample],
                 transform: Callable[[Image.Image], torch.Tensor], cache: DecodeCache | None = None,
                 cached_transform: Callable[[np.ndarray], torch.Tensor] | None = None,
                 prep: Preprocessing | None = None) -> None:
        self.index = index
        self.samples = list(samples)
        self.transform = transform
        self.cache = cache if (cached_transform is not None and prep is not None) else None
        self.cached_transform = cached_transform
        self.prep = prep

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item) -> tuple[torch.Tensor, int, int] | None:
        item, seed = item if isinstance(item, tuple) else (item, None)
        sample = self.samples[item]
        path = self.index.abs_path(sample)
        if self.cache is not None:
            entry = self.cache.get(sample.sha256)
            if entry is not None and not os.path.exists(path):
                return None   # deleted or moved since import: skipped, as without the cache
            if entry is None:
                try:
                    entry = decode_entry(load_image(path), self.prep)
                except (ImageLoadError, OSError):
                    return None
                self.cache.put(sample.sha256, entry)
            return _seeded(self.cached_transform, entry, seed), sample_target(self.index, sample), item
        try:
            image = load_image(path)
        except (ImageLoadError, OSError):
            return None
        return _seeded(self.transform, image, seed), sample_target(self.index, sample), item

    def commit_cache(self, items: Sequence[int]) -> int:
        """Make the cache entries of these (successfully loaded) items valid for later epochs and runs."""
        if self.cache is None:
            return 0
        return self.cache.commit(self.samples[i].sha256 for i in items)

    def cache_complete(self) -> bool:
        """True when every image of this dataset is in the decode cache."""
        return self.cache is not None and self.cache.filled(s.sha256 for s in self.samples)


def _seeded(transform: Callable, value, seed: int | None) -> torch.Tensor:
    if getattr(transform, "takes_seed", False):          # draws from its own generator: no global RNG
        return transform(value, seed)
    if seed is None:
        return transform(value)
    if torch.utils.data.get_worker_info() is not None:   # a worker's RNG belongs to it alone
        torch.manual_seed(seed)
        return transform(value)
    with torch.random.fork_rng(devices=[]):              # keep the trainer's RNG untouched
        torch.manual_seed(seed)
        return transform(value)


class _CachedEval:
    """Picklable: evaluation tensor from a cache entry."""

    def __init__(self, prep: Preprocessing) -> None:
        self.prep = prep

    def __call__(self, entry: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(eval_array(entry, self.prep))


class _CachedAugment:
    """Picklable: training transform applied to a cache entry."""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, entry: np.ndarray) -> torch.Tensor:
        return self.transform(Image.fromarray(entry))


def cached_eval_transform(prep: Preprocessing) -> Callable[[np.ndarray], torch.Tensor]:
    """Evaluation tensor from a cache entry: identical to `preprocess.preprocess` of the image."""
    return _CachedEval(prep)


def cached_train_transform(prep: Preprocessing, augment: str | CropFlip) -> Callable[[np.ndarray], torch.Tensor]:
    """Training transform on a cache entry (augmentation starts from the cached resized image)."""
    if isinstance(augment, CropFlip):
        return CachedCropFlipAugment(prep, augment)
    if augment == "none":
        return cached_eval_transform(prep)
    if augment == "light":
        return CachedCropFlipAugment(prep, LIGHT)
    return _CachedAugment(train_transform(prep, augment))


def split_dataset(index: DatasetIndex, samples: Sequence[Sample], prep: Preprocessing,
                  augment: str | CropFlip | None, cache: DecodeCache | None = None) -> ImageDataset:
    """A dataset of `samples`: evaluation transform when `augment` is None, else that training augmentation
    (a preset name or the automatic recipe's `CropFlip`)."""
    from desktop_tl.core.data.transforms import eval_transform

    transform = eval_transform(prep) if augment is None else train_transform(prep, augment)
    cached = cached_eval_transform(prep) if augment is None else cached_train_transform(prep, augment)
    return ImageDataset(index, samples, transform, cache, cached, prep)


def collate_skipping(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Stack the good items; returns (images, labels, item indices, number skipped)."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), skipped
    images, labels, items = zip(*good)
    targets = torch.stack(labels) if isinstance(labels[0], torch.Tensor) else torch.tensor(labels)
    return torch.stack(images), targets, torch.tensor(items), skipped


def default_num_workers() -> int:
    """Loader workers sized to the machine: one core stays free for the app itself."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def item_seed(seed: int, item: int) -> int:
    """The augmentation seed of one item in one epoch."""
    return (seed * 1_000_003 + item * 7_919 + 12_345) % (2 ** 62)


class EpochBatchSampler(Sampler):
    """Global batches of one epoch, in an order that depends only on `seed`; this rank's slice.

    Yields lists of (item, augmentation seed). `set_seed` before each epoch lets one loader
    (with persistent workers) serve every epoch. With `world` > 1, rank r gets items r, r+world, ...
    of each global batch, so the union over ranks is exactly the single-process batch.
    """

    def __init__(self, length: int, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.length, self.batch_size, self.shuffle = length, batch_size, shuffle
        self.seed, self.rank, self.world = seed, rank, world

    def set_seed(self, seed: int) -> None:
        """The seed of the next epoch."""
        self.seed = seed

    def order(self) -> list[int]:
        """Every item of the epoch in order (all ranks)."""
        if not self.shuffle:
            return list(range(self.length))
        return torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed)).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int | None]]]:
        order = self.order()
        for start in range(0, self.length, self.batch_size):
            chunk = order[start:start + self.batch_size][self.rank::self.world]
            yield [(i, item_seed(self.seed, i) if self.shuffle else None) for i in chunk]

    def __len__(self) -> int:
        return -(-self.length // self.batch_size)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int,
                num_workers: int, pin_memory: bool = False, persistent: bool = False,
                rank: int = 0, world: int = 1) -> DataLoader:
    """A DataLoader whose order and augmentation depend only on `seed` (see EpochBatchSampler).

    With `persistent`, reuse the loader across epochs: call `loader.batch_sampler.set_seed(...)`.
    """
    workers = default_num_workers() if num_workers < 0 else num_workers
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, seed, rank, world)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_skipping,
                      pin_memory=pin_memory, persistent_workers=persistent and workers > 0)
