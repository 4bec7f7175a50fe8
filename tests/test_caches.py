"""Decoded-image cache and feature cache: exact evaluation tensors, crash safety, reuse, same results."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.data import loaders as data
from desktop_tl.core.data.decode_cache import DecodeCache, cache_box, decode_entry, eval_array
from desktop_tl.core.data.loaders import cached_eval_transform, make_loader, split_dataset
from desktop_tl.core.data.preprocess import Preprocessing, preprocess
from desktop_tl.core.events import BatchProgress, Finished
from desktop_tl.core.paths import user_cache_dir
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import create_run, load_index
from desktop_tl.core.training.run import train_run

from helpers import train_until_saved

SPLIT = SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=3)


def _prep(size=(64, 64), crop_pct=0.875, interpolation="bicubic") -> Preprocessing:
    return Preprocessing(size, interpolation, crop_pct, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(64, 64), (97, 97), (224, 224), (64, 80), (33, 47)])
@pytest.mark.parametrize("crop_pct", [0.875, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_eval_tensor_from_the_cache_equals_preprocess(size, crop_pct, interpolation):
    prep = _prep(size, crop_pct, interpolation)
    for seed, (w, h) in enumerate([(144, 144), (301, 173), (173, 301), (50, 400), (31, 29), (640, 479)]):
        image = _image(w, h, seed)
        entry = decode_entry(image, prep)
        assert entry.shape == (*cache_box(prep), 3) and entry.dtype == np.uint8
        assert np.array_equal(eval_array(entry, prep), preprocess(image, prep)), (w, h)


def _dataset_and_cache(small_dataset, tmp_path, prep):
    from desktop_tl.core.data.importer import import_dataset

    index = import_dataset(small_dataset, SPLIT)
    cache, why = DecodeCache.open([s.sha256 for s in index.samples], prep, tmp_path / "cache")
    assert cache is not None, why
    return index, cache


def test_cached_dataset_matches_uncached_and_never_decodes_twice(small_dataset, tmp_path, monkeypatch):
    prep = _prep()
    index, cache = _dataset_and_cache(small_dataset, tmp_path, prep)
    samples = index.split("val") + index.split("test")
    plain = split_dataset(index, samples, prep, None)
    cached = split_dataset(index, samples, prep, None, cache)
    decodes = []
    real = data.decode_entry
    monkeypatch.setattr(data, "decode_entry", lambda image, p: decodes.append(1) or real(image, p))
    first = [cached[i] for i in range(len(cached))]
    assert len(decodes) == len(cached)
    assert cached.commit_cache(range(len(cached))) == len(cached) and cached.cache_complete()
    # A new object on the same file, as a later run or another process would see it.
    again = split_dataset(index, samples, prep, None, DecodeCache.open([s.sha256 for s in index.samples], prep,
                                                                        tmp_path / "cache")[0])
    for i in range(len(plain)):
        reference = plain[i]
        assert torch.equal(reference[0], first[i][0]) and torch.equal(reference[0], again[i][0])
        assert reference[1:] == again[i][1:]
    assert len(decodes) == len(cached)   # nothing decoded the second time


def test_uncommitted_entries_are_never_read(small_dataset, tmp_path):
    """A process killed after writing rows but before commit leaves entries that count as empty."""
    prep = _prep()
    index, cache = _dataset_and_cache(small_dataset, tmp_path, prep)
    sample = index.samples[0]
    entry = np.full((*cache_box(prep), 3), 7, dtype=np.uint8)
    cache.put(sample.sha256, entry)
    fresh = DecodeCache.open([s.sha256 for s in index.samples], prep, tmp_path / "cache")[0]
    assert fresh.get(sample.sha256) is None
    assert cache.commit([sample.sha256]) == 1
    assert np.array_equal(fresh.get(sample.sha256), entry)


def test_a_damaged_cache_file_is_rebuilt(small_dataset, tmp_path):
    prep = _prep()
    index, cache = _dataset_and_cache(small_dataset, tmp_path, prep)
    shas = [s.sha256 for s in index.samples]
    cache.put(shas[0], np.ones((*cache_box(prep), 3), dtype=np.uint8))
    cache.commit(shas[:1])
    with open(cache.path, "r+b") as fh:   # a torn header (e.g. another program truncated the file)
        fh.truncate(100)
    rebuilt, why = DecodeCache.open(shas, prep, tmp_path / "cache")
    assert rebuilt is not None, why
    assert rebuilt.path.stat().st_size == rebuilt.size and rebuilt.get(shas[0]) is None
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]


def test_a_cache_too_large_is_switched_off(small_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("DESKTOP_TL_DECODE_CACHE_MAX_BYTES", "1000")
    from desktop_tl.core.data.importer import import_dataset

    index = import_dataset(small_dataset, SPLIT)
    cache, why = DecodeCache.open([s.sha256 for s in index.samples], _prep(), tmp_path / "cache")
    assert cache is None and "limit" in why


def test_workers_fill_the_cache_and_a_vanished_file_is_still_skipped(small_dataset, tmp_path, monkeypatch):
    import shutil

    dataset_dir = tmp_path / "data"
    shutil.copytree(small_dataset, dataset_dir)
    prep = _prep()
    index, cache = _dataset_and_cache(dataset_dir, tmp_path, prep)
    samples = index.split("train")
    dataset = split_dataset(index, samples, prep, "light", cache)
    loader = make_loader(dataset, 8, True, 5, num_workers=2, persistent=True)
    items = [i for _, _, batch_items, _ in loader for i in batch_items.tolist()]
    assert sorted(items) == list(range(len(samples)))
    dataset.commit_cache(items)
    assert dataset.cache_complete()

    def no_decoding(*args):
        raise AssertionError("decoded although the image is cached")

    monkeypatch.setattr(data, "load_image", no_decoding)   # inherited by forked workers
    (index.abs_path(samples[0])).unlink()
    loader.batch_sampler.set_seed(6)
    seen, skipped = [], 0
    for _, _, batch_items, batch_skipped in loader if os.name != "nt" else []:
        seen += batch_items.tolist()
        skipped += batch_skipped
    assert skipped == 1 and 0 not in seen and len(seen) == len(samples) - 1


def _config(**overrides) -> TrainConfig:
    base = dict(recipe="custom", epochs=2, batch_size=8, image_size=64, num_workers=0, augment="none", freeze="last:1")
    base.update(overrides)
    return TrainConfig(**base)


def _weights(run):
    return load_file(run / checkpoint.LAST)


def _max_diff(a, b) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def test_training_with_the_decode_cache_equals_training_without(tmp_path, small_dataset, monkeypatch):
    decodes = []
    real = data.decode_entry
    monkeypatch.setattr(data, "decode_entry", lambda image, p: decodes.append(1) or real(image, p))
    runs = {}
    for name, on in (("plain", False), ("cached", True), ("again", True)):
        runs[name] = tmp_path / name
        create_run(runs[name], small_dataset, _config(decode_cache=on), SPLIT)
        before = len(decodes)
        list(train_run(runs[name]))
        runs[name + "_decodes"] = len(decodes) - before
    index = load_index(runs["plain"])
    assert runs["plain_decodes"] == 0
    # Train and validation images decoded once (epoch 1), not in epoch 2; a later run decodes nothing.
    assert runs["cached_decodes"] == len(index.split("train")) + len(index.split("val"))
    assert runs["again_decodes"] == 0
    plain, cached, again = (_weights(runs[n]) for n in ("plain", "cached", "again"))
    assert all(torch.equal(plain[k], cached[k]) and torch.equal(plain[k], again[k]) for k in plain)
    assert list((user_cache_dir() / "decode").glob("*.u8cache"))


def test_results_do_not_depend_on_the_number_of_workers(tmp_path, small_dataset):
    runs = []
    for workers in (0, 2):
        run = tmp_path / f"w{workers}"
        create_run(run, small_dataset, _config(epochs=1, augment="light", num_workers=workers), SPLIT)
        assert isinstance(list(train_run(run))[-1], Finished)
        runs.append(_weights(run))
    assert _max_diff(*runs) <= 1e-6


def _count_backbone_calls(monkeypatch) -> list[int]:
    import timm.models.efficientnet as effnet

    calls = []
    real = effnet.EfficientNet.forward_features
    monkeypatch.setattr(effnet.EfficientNet, "forward_features", lambda self, x: calls.append(len(x)) or real(self, x))
    return calls


def test_feature_cache_runs_the_backbone_once_with_the_same_result(tmp_path, small_dataset, monkeypatch):
    calls = _count_backbone_calls(monkeypatch)
    results = {}
    for name, on in (("features", True), ("plain", False)):
        run = tmp_path / name
        create_run(run, small_dataset, _config(epochs=3, freeze="head", feature_cache=on,
                                               memory_format="contiguous"), SPLIT)   # no layout probe to count
        start = len(calls)
        events = list(train_run(run))
        results[name] = (events, sum(calls[start:]), _weights(run))
    index = load_index(tmp_path / "plain")
    n_train, n_val, n_test = (len(index.split(s)) for s in ("train", "val", "test"))
    # Images through the backbone: epoch 1 (train + val) and the final validation/test evaluation,
    # plus 2 x 2 images for the architecture check, plus every split once for the check for unfamiliar images
    # (core.training.detector); without the cache every epoch runs it.
    detector = n_train + n_val + n_test
    assert results["features"][1] == n_train + n_val + (n_val + n_test) + 4 + detector
    assert results["plain"][1] == 3 * (n_train + n_val) + (n_val + n_test) + detector
    assert _max_diff(results["features"][2], results["plain"][2]) <= 1e-5
    shape = [[type(e).__name__ for e in r[0] if not isinstance(e, BatchProgress)] for r in results.values()]
    assert shape[0] == shape[1]
    batches = [[(e.epoch, e.batch, e.batches) for e in r[0] if isinstance(e, BatchProgress)] for r in results.values()]
    assert batches[0] == batches[1]
    acc = [r[0][-1].metrics["test"]["accuracy"] for r in results.values()]
    assert abs(acc[0] - acc[1]) <= 0.01


def test_resume_with_the_feature_cache_continues_exactly(tmp_path, small_dataset):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    for run in (straight, interrupted):
        create_run(run, small_dataset, _config(epochs=2, freeze="head"), SPLIT)
    list(train_run(straight))
    train_until_saved(interrupted)
    list(train_run(interrupted))
    assert _max_diff(_weights(straight), _weights(interrupted)) <= 1e-6


def test_feature_cache_is_not_used_with_augmentation_or_dropout():
    from desktop_tl.core.models.factory import create_model
    from desktop_tl.core.training.probe import splits_cleanly as _splits_cleanly

    model, _ = create_model("efficientnet_lite0", "none", 3)
    prep = _prep()
    assert _splits_cleanly(model, prep)
    model.drop_rate = 0.2
    assert not _splits_cleanly(model, prep)


def test_transforms_survive_spawned_loader_workers():
    """Windows and macOS start loader workers by spawn: every transform must pickle."""
    import pickle

    from desktop_tl.core.data.loaders import cached_train_transform
    from desktop_tl.core.data.transforms import CropFlip, eval_transform, train_transform

    prep = Preprocessing((32, 32), "bicubic", 0.875, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    image = np.full((40, 40, 3), 128, dtype=np.uint8)
    recipe = CropFlip((0.8, 1.0), "free", colour_jitter=True)     # the automatic recipe's augmentation
    augments = ("light", "strong", recipe)
    for transform in (eval_transform(prep), cached_eval_transform(prep),
                      *(train_transform(prep, a) for a in augments), *(cached_train_transform(prep, a) for a in augments)):
        clone = pickle.loads(pickle.dumps(transform))
        value = image if "Cached" in type(clone).__name__ else Image.fromarray(image)
        assert clone(value).shape == (3, 32, 32)


def test_cached_light_augmentation_is_seeded_per_item_and_leaves_the_global_rng_alone():
    from desktop_tl.core.data.loaders import _seeded, cached_train_transform
    from desktop_tl.core.data.transforms import random_resized_box

    prep = Preprocessing((32, 32), "bicubic", 0.875, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    entry = np.random.default_rng(0).integers(0, 256, (37, 37, 3), dtype=np.uint8)
    transform = cached_train_transform(prep, "light")
    state = torch.get_rng_state()
    views = [_seeded(transform, entry, seed) for seed in range(40)]
    assert torch.equal(state, torch.get_rng_state())
    assert all(v.shape == (3, 32, 32) and v.dtype == torch.float32 for v in views)
    assert torch.equal(_seeded(transform, entry, 3), views[3])                 # same seed, same view
    assert len({v.numpy().tobytes() for v in views}) == 40                    # different seeds differ
    rng = np.random.default_rng(1)
    for _ in range(500):
        top, left, h, w = random_resized_box(rng, 37, 50, (0.6, 1.0))
        assert 0 <= top and top + h <= 37 and 0 <= left and left + w <= 50
        assert 0.55 <= h * w / (37 * 50) <= 1.0 and 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    # a strip far from the allowed aspect ratios falls back to its centre crop of the nearest ratio
    assert random_resized_box(np.random.default_rng(0), 10, 200, (0.99, 1.0)) == (0, 93, 10, 13)
