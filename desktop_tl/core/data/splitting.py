"""Divide a dataset into train, validation and test when the source does not fix the splits.

Per class, validation and test each get round(n * fraction) images, at least one each when the class
has three or more independent units (images, or patients when grouping), and training always keeps at
least one. Units are whole patients (with `group_by_patient`) merged with identical files, so neither a
patient nor a file's copies straddle two splits. Units are sorted by path, shuffled with the seed and
placed largest first into the split they fill best.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from desktop_tl.core.config import SplitConfig
from desktop_tl.core.data.index import HOLDOUT_SPLITS, SPLITS


@dataclass(frozen=True)
class Item:
    rel: str
    label: int
    split: str | None
    sha256: str
    group: str | None
    near: str | None = None     # near-duplicate cluster (data.near_duplicates): kept in one split, like copies
    labels: tuple[int, ...] = ()   # a multi-label dataset's label set (core.data.multilabel_split); label is -1


def split_units(items: list[Item], by_group: bool, by_near: bool = False) -> list[list[int]]:
    """Indices of items that must share a split: same file bytes; with `by_group` the same patient/group, with
    `by_near` the same near-duplicate cluster."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        keys = [("sha", item.sha256)] + ([("group", item.group)] if by_group and item.group else []) \
            + ([("near", item.near)] if by_near and item.near else [])
        for key in keys:
            a, b = find(i), find(first_with.setdefault(key, i))
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        members[find(i)].append(i)
    return sorted(members.values(), key=lambda unit: unit[0])


def holdout_targets(n_images: int, nunits: int, config: SplitConfig) -> dict[str, int]:
    """Images per class wanted in val and test, leaving training at least one."""
    if nunits < 2:
        return dict.fromkeys(HOLDOUT_SPLITS, 0)
    targets = {}
    for name, fraction in (("val", config.val_fraction), ("test", config.test_fraction)):
        wanted = int(n_images * fraction + 0.5)
        targets[name] = max(wanted, 1) if fraction > 0 and nunits >= 3 else wanted
    while targets["val"] + targets["test"] > n_images - 1:
        larger = "test" if targets["test"] >= targets["val"] else "val"
        targets[larger] -= 1
    return targets


def assign_splits(items: list[Item], n_classes: int, config: SplitConfig) -> tuple[list[str], list[int]]:
    """A split per item, and the classes kept wholly in training because they form one unit."""
    units = split_units(items, config.group_by_patient, config.group_near_duplicates)
    random.Random(config.seed).shuffle(units)
    units.sort(key=len, reverse=True)  # stable: equal sizes keep the seeded order
    unit_counts = [Counter(items[i].label for i in unit) for unit in units]
    units_per_class = Counter(c for counts in unit_counts for c in counts)
    images_per_class = Counter(item.label for item in items)
    targets = {c: holdout_targets(images_per_class[c], units_per_class[c], config) for c in range(n_classes)}
    placed = {s: Counter() for s in SPLITS}
    unit_split: list[str] = []
    for counts in unit_counts:
        best, best_gain = "train", 0
        if all(units_per_class[c] >= 2 for c in counts):
            for s in HOLDOUT_SPLITS:
                gain = 0
                for c, n in counts.items():
                    room = max(targets[c][s] - placed[s][c], 0)
                    gain += min(n, room) - max(n - room, 0)
                if gain > best_gain:
                    best, best_gain = s, gain
        unit_split.append(best)
        placed[best].update(counts)

    def move(u: int, to: str) -> None:
        placed[unit_split[u]].subtract(unit_counts[u])
        placed[to].update(unit_counts[u])
        unit_split[u] = to

    by_size = sorted(range(len(units)), key=lambda u: len(units[u]))
    # A class with 3+ units gets at least one in each holdout split the greedy pass left empty.
    for c in range(n_classes):
        for s in HOLDOUT_SPLITS:
            if units_per_class[c] >= 3 and targets[c][s] and not placed[s][c]:
                u = next((u for u in by_size if unit_split[u] == "train" and c in unit_counts[u]
                          and all(placed["train"][k] > n for k, n in unit_counts[u].items())), None)
                if u is not None:
                    move(u, s)
    # Units spanning classes can pull a class's last image out of training: put it back.
    for c in range(n_classes):
        if not placed["train"][c]:
            move(next(u for u in by_size if c in unit_counts[u]), "train")

    splits = [""] * len(items)
    for unit, s in zip(units, unit_split):
        for i in unit:
            splits[i] = s
    single = sorted(c for c in range(n_classes) if units_per_class[c] == 1)
    return splits, single


def single_group_warning(name: str, items: list[Item], label: int) -> str:
    groups = {item.group for item in items if item.label == label}
    if len(groups) == 1 and None not in groups:
        cause = "all its images come from one patient/group"
    else:
        cause = "all its images are copies of one file"
    return (f"Class '{name}': {cause}, so they all stay in training and the class's score "
            "cannot be measured. Add images from other patients to measure it.")


def group_leak_warnings(items: list[Item], splits: list[str]) -> list[str]:
    splits_of: dict[str, set[str]] = defaultdict(set)
    for item, s in zip(items, splits):
        if item.group:
            splits_of[item.group].add(s)
    leaking = sum(1 for seen in splits_of.values() if len(seen) > 1)
    if not leaking:
        return []
    return [f"{leaking} patients/groups have images in more than one of train/, val/ and test/; "
            "the validation score may be too optimistic."]

