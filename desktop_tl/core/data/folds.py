"""Folds for cross-validation over the training and validation images of a small dataset.

The recipe's choices on a small dataset (linear probe or small network, views, penalty) are made on
out-of-fold predictions: every image is predicted by a model that never saw it. The folds keep together
what the split keeps together, so no fold's model sees a twin of an image it is scored on: identical
files, images of one patient (DICOM PatientID, a CSV group column) and near-duplicate clusters (the same
picture re-saved or cropped; chains longer than MAX_CLUSTER are look-alikes and are not merged). Within
those units the folds are stratified: each unit, largest first, goes to the fold whose classes are
furthest below their share.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from desktop_tl.core.data.index import NearDuplicate, Sample
from desktop_tl.core.data.near_duplicates import near_duplicate_clusters
from desktop_tl.core.data.splitting import Item, split_units


def fold_units(samples: Sequence[Sample], near_duplicates: Sequence[NearDuplicate] = ()) -> list[list[int]]:
    """Indices of samples that must share a fold (same file, patient or near-duplicate cluster)."""
    names = {s.path for s in samples}
    cluster = near_duplicate_clusters([(n.paths[0], n.paths[1], n.distance) for n in near_duplicates
                                       if n.paths[0] in names and n.paths[1] in names])
    items = [Item(s.path, s.label, s.split, s.sha256, s.group, cluster.get(s.path)) for s in samples]
    return split_units(items, by_group=True, by_near=True)


def assign_folds(samples: Sequence[Sample], folds: int, seed: int = 0,
                 near_duplicates: Sequence[NearDuplicate] = ()) -> list[int]:
    """A fold number (0 .. folds-1) per sample: units kept whole, classes spread evenly over the folds."""
    if folds < 2:
        raise ValueError("cross-validation needs at least two folds")
    units = fold_units(samples, near_duplicates)
    random.Random(seed).shuffle(units)
    units.sort(key=len, reverse=True)      # stable: equal sizes keep the seeded order
    per_class = Counter(s.label for s in samples)
    placed = [Counter() for _ in range(folds)]
    sizes = [0] * folds
    fold_of = [0] * len(samples)
    for unit in units:
        counts = Counter(samples[i].label for i in unit)

        def shortfall(f: int) -> tuple[float, int, int]:
            need = sum(n * (per_class[c] / folds - placed[f][c]) / per_class[c] for c, n in counts.items())
            return (-need, sizes[f], f)     # most needed first, then the smallest fold, then the first

        best = min(range(folds), key=shortfall)
        placed[best].update(counts)
        sizes[best] += len(unit)
        for i in unit:
            fold_of[i] = best
    return fold_of


def usable_folds(samples: Sequence[Sample], wanted: int) -> int:
    """How many folds the data allows: `wanted`, fewer when the smallest class has fewer images (each fold
    should see every class), 0 when cross-validation cannot work (a class with fewer than two images)."""
    smallest = min(Counter(s.label for s in samples).values(), default=0)
    folds = min(wanted, smallest)
    return folds if folds >= 2 else 0
