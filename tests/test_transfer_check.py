"""The negative-transfer check: a small network from scratch, and what is said about the comparison."""

from __future__ import annotations

import torch

from desktop_tl.core.training.baseline import MIN_EPOCHS, TransferCheck, affordable_epochs, train_from_scratch


def test_the_check_says_which_way_it_went():
    assert TransferCheck(0.95, 0.70, 20, 3.0).verdict == "helps"
    assert TransferCheck(0.95, 0.94, 20, 3.0).verdict == "no clear gain"
    hurts = TransferCheck(0.80, 0.95, 20, 3.0)
    assert hurts.verdict == "hurts" and not hurts.helps and "does not help" in hurts.describe()
    assert hurts.to_dict()["verdict"] == "hurts"


def test_the_small_network_learns_an_easy_task_from_scratch_and_stops_on_time():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(96, 3, 48, 48, generator=generator) * 0.1
    labels = torch.arange(96) % 2
    images[labels == 1, :, 12:36, 12:36] += 2.0           # class 1: a bright square in the middle
    fit = train_from_scratch(images[:64], labels[:64], images[64:], labels[64:], 2, epochs=8)
    assert fit.val_balanced_accuracy >= 0.9 and fit.epochs == 8 and fit.val_accuracy >= 0.9
    assert fit.train_loss < 0.5
    short = train_from_scratch(images[:64], labels[:64], images[64:], labels[64:], 2, epochs=40, max_seconds=0.0)
    assert short.epochs == 1                     # as many epochs as fit the time, at least one
    assert train_from_scratch(images[:64], labels[:64], images[64:], labels[64:], 2, epochs=8,
                              should_stop=lambda: True) is None


def test_the_small_network_gets_the_epochs_that_fit_its_time_and_enough_to_mean_something():
    assert affordable_epochs(40, epoch_seconds=0.1, max_seconds=10.0) == 40
    assert affordable_epochs(40, epoch_seconds=1.0, max_seconds=20.0) == 20
    assert affordable_epochs(40, epoch_seconds=1.0, max_seconds=8.0) == MIN_EPOCHS    # 15 s fit in 2 x 8 s
    assert affordable_epochs(40, epoch_seconds=10.0, max_seconds=10.0) == 1           # 150 s would not
