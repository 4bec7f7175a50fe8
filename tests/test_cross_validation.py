"""Cross-validated choices: folds that keep patients and near duplicates together, and a choice between
candidates that keeps the pretrained path unless another one is better beyond the noise."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from desktop_tl.core.data.folds import assign_folds, usable_folds
from desktop_tl.core.data.index import DatasetIndex, NearDuplicate, Sample
from desktop_tl.core.evaluation.selection import Comparison, compare_candidates, log_loss_gain, lower_loss_beyond_noise
from desktop_tl.core.training.probe_fit import cross_validated_probe


def _samples(per_class: int, classes: int = 3, patients_of: int = 1) -> list[Sample]:
    out = []
    for c in range(classes):
        for k in range(per_class):
            group = f"p{c}_{k // patients_of}" if patients_of > 1 else None
            out.append(Sample(f"{c}/{k}.png", c, "train" if k % 4 else "val", f"sha{c}_{k}", group))
    return out


def test_folds_are_stratified_and_cover_every_image():
    samples = _samples(50)
    folds = assign_folds(samples, 5, seed=3)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    for c in range(3):
        per_fold = Counter(f for s, f in zip(samples, folds) if s.label == c)
        assert set(per_fold.values()) == {10}


def test_folds_keep_patients_copies_and_near_duplicates_together():
    samples = _samples(40, patients_of=4)                 # 10 patients per class, 4 images each
    copy = Sample("2/copy.png", 2, "train", samples[0].sha256)     # the same bytes as 0/0.png
    samples.append(copy)
    near = [NearDuplicate(("1/3.png", "2/5.png"), 4, False)]
    folds = assign_folds(samples, 5, seed=0, near_duplicates=near)
    by_patient: dict[str, set[int]] = {}
    for s, f in zip(samples, folds):
        if s.group:
            by_patient.setdefault(s.group, set()).add(f)
    assert all(len(found) == 1 for found in by_patient.values())
    fold_of = {s.path: f for s, f in zip(samples, folds)}
    assert fold_of["2/copy.png"] == fold_of["0/0.png"]
    assert fold_of["1/3.png"] == fold_of["2/5.png"]
    assert len(set(folds)) == 5


def test_patient_units_survive_the_run_folder_without_identifiers(tmp_path):
    samples = _samples(8, patients_of=4)
    index = DatasetIndex(tmp_path, tmp_path, "folder", ["a", "b", "c"], samples, [], [], [])
    data = index.to_json(".")
    assert all(isinstance(item["unit"], int) for item in data["samples"])
    assert not any(s.group in str(data) for s in samples)
    back = DatasetIndex.from_json(data, tmp_path)
    assert assign_folds(back.samples, 2) == assign_folds(samples, 2)
    pairs = {(a.group == b.group) for a in samples for b in samples}
    assert pairs == {(a.group == b.group) for a in back.samples for b in back.samples}


def test_fewer_folds_when_a_class_is_small():
    samples = _samples(3)
    assert usable_folds(samples, 5) == 3
    assert usable_folds(samples[:1] + samples[3:], 5) == 0


def _probs(labels: np.ndarray, right: np.ndarray, classes: int = 2) -> np.ndarray:
    """One-hot-ish probabilities, right where `right` is True."""
    predicted = np.where(right, labels, (labels + 1) % classes)
    p = np.full((len(labels), classes), 0.1 / (classes - 1))
    p[np.arange(len(labels)), predicted] = 0.9
    return p


def test_a_tie_within_the_noise_keeps_the_pretrained_path():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    probe = _probs(labels, rng.random(80) < 0.80)
    scratch = _probs(labels, rng.random(80) < 0.84)          # a few points better on 80 images: noise
    comparison = compare_candidates(labels, {"probe": probe, "scratch": scratch}, "probe", folds=5)
    assert comparison.chosen == "probe"
    gain = comparison.score("scratch")
    assert gain.gain_low < 0 < gain.gain_high
    assert "no other candidate is better beyond the noise" in comparison.describe()[-1]


def test_a_candidate_better_beyond_the_noise_is_chosen_with_its_interval():
    labels = np.repeat([0, 1, 2], 200)
    rng = np.random.default_rng(1)
    probe_right = rng.random(600) < 0.75
    scratch_right = probe_right | (rng.random(600) < 0.5)     # right wherever the probe is, and more
    candidates = {"probe": _probs(labels, probe_right, 3), "scratch": _probs(labels, scratch_right, 3)}
    comparison = compare_candidates(labels, candidates, "probe", folds=5)
    assert comparison.chosen == "scratch"
    s = comparison.score("scratch")
    assert s.gain_low > 0.05 and s.balanced_accuracy_low < s.balanced_accuracy < s.balanced_accuracy_high
    assert s.gain == pytest.approx(scratch_right.mean() - probe_right.mean(), abs=0.01)
    assert Comparison.from_dict(comparison.to_dict()) == comparison


def test_of_two_candidates_beyond_the_noise_the_larger_gain_wins():
    labels = np.repeat([0, 1], 300)
    rng = np.random.default_rng(2)
    base = rng.random(600) < 0.6
    better = base | (rng.random(600) < 0.4)
    best = better | (rng.random(600) < 0.5)
    candidates = {"probe": _probs(labels, base), "scratch": _probs(labels, better), "average": _probs(labels, best)}
    assert compare_candidates(labels, candidates, "probe", folds=5).chosen == "average"
    assert compare_candidates(labels, candidates, "probe", folds=5,
                              parts={"average": ("probe", "scratch")}).chosen == "average"   # beyond both parts


def test_an_average_no_better_than_its_best_part_beyond_the_noise_is_not_taken():
    labels = np.repeat([0, 1], 300)
    rng = np.random.default_rng(3)
    probe_right = rng.random(600) < 0.6
    scratch_right = probe_right | (rng.random(600) < 0.6)       # far better than the probe
    average_right = scratch_right.copy()
    average_right[np.flatnonzero(~scratch_right)[:3]] = True   # three more images right: within the noise
    candidates = {"probe": _probs(labels, probe_right), "scratch": _probs(labels, scratch_right),
                  "ensemble": _probs(labels, average_right)}
    comparison = compare_candidates(labels, candidates, "probe", folds=5, parts={"ensemble": ("probe", "scratch")})
    assert comparison.chosen == "scratch"          # the larger gain, but averaging does not pay for itself
    assert comparison.score("ensemble").gain > comparison.score("scratch").gain
    assert comparison.score("ensemble").over_parts_low <= 0
    assert any("not better than each model it averages" in line for line in comparison.describe())


def _view_features(noisy_views: bool, images: int = 800, seed: int = 0):
    """Two classes apart on the first of eight features. With `noisy_views` each view (the image and its
    mirror image) carries its own noise, so averaging the two predictions removes some of it; else the mirror
    image's features equal the original's, and averaging changes nothing."""
    rng = np.random.default_rng(seed)
    labels = np.arange(images) % 2
    signal = np.zeros((images, 8))
    signal[:, 0] = np.where(labels == 1, 1.0, -1.0)

    def noisy():
        return torch.from_numpy(signal + rng.normal(0, 1.5, signal.shape)).float()

    first = noisy()
    features = {"identity": first, "hflip": noisy() if noisy_views else first.clone()}
    return features, torch.from_numpy(labels), [k % 5 for k in range(images)]


@pytest.mark.parametrize("noisy_views", [True, False])
def test_predictions_are_averaged_over_views_only_when_that_lowers_the_out_of_fold_loss_beyond_the_noise(
        noisy_views):
    features, labels, folds = _view_features(noisy_views)
    cv = cross_validated_probe(features, labels, folds, 2, ("mirror",), (1e-3, 1e-1))
    assert cv.view_set == "mirror"
    if noisy_views:
        assert cv.test_time_views == ("identity", "hflip") and cv.oof_loss < cv.plain_oof_loss
    else:
        assert cv.test_time_views == ("identity",) and cv.plain_oof_loss is None


def test_a_lower_log_loss_counts_only_beyond_two_standard_errors():
    labels = np.array([0, 1] * 50)
    reference = np.tile([[0.6, 0.4], [0.4, 0.6]], (50, 1))
    sharper = np.tile([[0.7, 0.3], [0.3, 0.7]], (50, 1))
    gain, spread = log_loss_gain(labels, reference, sharper)
    assert gain == pytest.approx(np.log(0.7) - np.log(0.6)) and spread == pytest.approx(0.0)
    assert lower_loss_beyond_noise(labels, reference, sharper)
    assert not lower_loss_beyond_noise(labels, reference, reference)
    mixed = sharper.copy()
    mixed[::2] = [[0.5, 0.5]]            # better on half the images, worse on the other half: noise
    assert not lower_loss_beyond_noise(labels, reference, mixed)
