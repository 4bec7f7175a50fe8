"""Split a multi-label dataset into train, validation and test by iterative stratification.

Iterative stratification (Sechidis, Tsoumakas and Vlahavas, ECML PKDD 2011) spreads every label over the
splits in proportion, rarest label first: each unit showing the label that has the fewest images left goes
to the split that still wants most images of that label (ties: the split that wants most images, then the
seed). The units are whole patients and the copies of a file (and near-duplicate clusters when asked), as in
the single-label split (core.data.splitting), so no patient or copy straddles two splits. The library
`iterative-stratification` implements the same algorithm for single images but cannot keep groups together,
hence this version over units. Afterwards every label keeps at least one unit in training.
"""

from __future__ import annotations

import random
from collections import Counter

from desktop_tl.core.config import SplitConfig
from desktop_tl.core.data.index import SPLITS
from desktop_tl.core.data.splitting import Item, split_units


def assign_multilabel_splits(items: list[Item], n_labels: int, config: SplitConfig) -> list[str]:
    """A split per item (items carry `labels`), each label spread over the splits as the fractions say."""
    units = split_units(items, config.group_by_patient, config.group_near_duplicates)
    rng = random.Random(config.seed)
    rng.shuffle(units)
    fractions = {"train": 1.0 - config.val_fraction - config.test_fraction, "val": config.val_fraction,
                 "test": config.test_fraction}
    unit_labels = [Counter(k for i in unit for k in items[i].labels) for unit in units]
    totals = Counter()
    for counts in unit_labels:
        totals.update(counts)
    wanted_labels = {s: {k: fractions[s] * totals[k] for k in range(n_labels)} for s in SPLITS}
    wanted_images = {s: fractions[s] * len(items) for s in SPLITS}
    unit_split: list[str | None] = [None] * len(units)
    left = Counter(totals)

    def place(u: int, split: str) -> None:
        unit_split[u] = split
        wanted_images[split] -= len(units[u])
        for k, n in unit_labels[u].items():
            wanted_labels[split][k] -= n
            left[k] -= n

    while any(left[k] > 0 for k in range(n_labels)):
        rarest = min((k for k in range(n_labels) if left[k] > 0), key=lambda k: (left[k], k))
        for u in [u for u in range(len(units)) if unit_split[u] is None and unit_labels[u][rarest]]:
            split = max(SPLITS, key=lambda s: (wanted_labels[s][rarest], wanted_images[s], rng.random()))
            place(u, split)
    for u in range(len(units)):           # the units with none of the labels: by the images each split wants
        if unit_split[u] is None:
            place(u, max(SPLITS, key=lambda s: (wanted_images[s], rng.random())))
    _keep_every_label_in_training(units, unit_labels, unit_split, n_labels)
    splits = [""] * len(items)
    for unit, split in zip(units, unit_split, strict=True):
        for i in unit:
            splits[i] = split
    return splits


def _keep_every_label_in_training(units: list[list[int]], unit_labels: list[Counter], unit_split: list[str | None],
                                  n_labels: int) -> None:
    """A label with no training image takes back its smallest unit from validation or test."""
    for k in range(n_labels):
        if any(unit_split[u] == "train" and unit_labels[u][k] for u in range(len(units))):
            continue
        held = [u for u in range(len(units)) if unit_labels[u][k]]
        if held:
            unit_split[min(held, key=lambda u: (len(units[u]), u))] = "train"
