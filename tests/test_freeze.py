"""Freezing presets, the module tree, frozen BatchNorm statistics and layer-wise LR decay."""

from __future__ import annotations

import pytest
import timm
import torch

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.freeze import (
    apply_freeze,
    freeze_batchnorm_stats,
    module_tree,
    optimizer_param_groups,
    parameter_groups,
    spec_from_trainable_modules,
    trainable_names,
)


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    return timm.create_model("efficientnet_lite0", num_classes=3)


def test_head_trains_only_the_classifier(lite0):
    trainable, total = apply_freeze(lite0, "head")
    assert trainable == 1280 * 3 + 3
    assert total == sum(p.numel() for p in lite0.parameters())
    assert {n for n, p in lite0.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}


def test_all_is_a_full_fine_tune(lite0):
    trainable, total = apply_freeze(lite0, "all")
    assert trainable == total


def test_last_n_unfreezes_the_last_stages_from_group_matcher(lite0):
    groups = parameter_groups(lite0)
    assert groups[0][0].startswith("conv_stem") and groups[-1] == ["classifier.weight", "classifier.bias"]
    last1 = trainable_names(lite0, "last:1")
    last2 = trainable_names(lite0, "last:2")
    assert "conv_head.weight" in last1 and "blocks.6.0.conv_pw.weight" in last1
    assert not any(n.startswith("blocks.5.") for n in last1)
    assert any(n.startswith("blocks.5.") for n in last2) and last1 < last2
    assert trainable_names(lite0, "last:0") == trainable_names(lite0, "head")
    assert trainable_names(lite0, f"last:{len(groups) - 1}") == trainable_names(lite0, "all")


def test_explicit_module_list_and_round_trip_to_presets(lite0):
    names = trainable_names(lite0, "modules:blocks.6")
    assert "blocks.6.0.conv_pw.weight" in names and "classifier.weight" in names
    assert "conv_head.weight" not in names
    assert spec_from_trainable_modules(lite0, []) == "head"
    assert spec_from_trainable_modules(lite0, ["blocks.6", "conv_head", "bn2"]) == "last:1"
    assert spec_from_trainable_modules(lite0, ["blocks.6"]) == "modules:blocks.6"


@pytest.mark.parametrize("spec", ["last:x", "modules:nope", "bogus"])
def test_bad_specs_are_user_errors(lite0, spec):
    with pytest.raises(UserError):
        trainable_names(lite0, spec)


def test_module_tree_counts_parameters(lite0):
    apply_freeze(lite0, "last:1")
    tree = module_tree(lite0)
    assert tree.params == sum(p.numel() for p in lite0.parameters())
    assert tree.trainable == sum(p.numel() for p in lite0.parameters() if p.requires_grad)
    blocks = next(c for c in tree.children if c.name == "blocks")
    assert [c.name for c in blocks.children][-1] == "blocks.6"
    assert blocks.children[-1].trainable == blocks.children[-1].params
    assert blocks.children[0].trainable == 0


def test_frozen_batchnorm_running_stats_do_not_change():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=2)
    apply_freeze(model, "last:1")
    before = {n: b.clone() for n, b in model.named_buffers()}
    model.train()
    freeze_batchnorm_stats(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        loss = model(torch.randn(4, 3, 64, 64) * 3 + 1).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = dict(model.named_buffers())
    frozen = [n for n in before if n.startswith(("bn1.", "layer1.", "layer2.", "layer3."))]
    trained = [n for n in before if n.startswith("layer4.") and n.endswith("running_mean")]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert trained and any(not torch.equal(before[n], after[n]) for n in trained)


def test_layer_decay_scales_earlier_groups(lite0):
    apply_freeze(lite0, "last:2")
    flat = optimizer_param_groups(lite0, weight_decay=0.05, layer_decay=1.0)
    assert {g["lr_scale"] for g in flat} == {1.0}
    decayed = optimizer_param_groups(lite0, weight_decay=0.05, layer_decay=0.5)
    assert sorted({g["lr_scale"] for g in decayed}) == [0.25, 0.5, 1.0]
    assert all(g["weight_decay"] == 0.0 for g in decayed if all(p.ndim <= 1 for p in g["params"]))
    assert sum(len(g["params"]) for g in decayed) == len(trainable_names(lite0, "last:2"))
