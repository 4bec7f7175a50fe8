"""The linear probe: a converged logistic regression, chosen on validation, folded into the model's classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from desktop_tl.core.models.ensemble import view
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.training.probe import has_linear_head
from desktop_tl.core.training.probe_fit import fit_logistic, fit_probe


def _blobs(n: int, dim: int, classes: int, seed: int, shift: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * shift
    labels = torch.arange(n) % classes
    features = centres[labels] + torch.randn(n, dim, generator=generator)
    return features.abs() + 0.5, labels          # non-negative, offset: like pooled ReLU features


def test_the_fit_converges_to_the_optimum_of_the_penalised_loss():
    x, y = _blobs(120, 8, 3, seed=0)
    x = (x - x.mean(0)) / x.std()
    weight, bias = fit_logistic(x, y, 3, l2=0.1)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x.double() @ weight.T + bias, y) + 0.05 * weight.square().sum()
    loss.backward()
    assert weight.grad.abs().max() < 1e-4 and bias.grad.abs().max() < 1e-4


def test_the_chosen_classifier_is_the_same_on_raw_features_and_generalises():
    x, y = _blobs(200, 16, 4, seed=1)
    xv, yv = _blobs(80, 16, 4, seed=2)
    fit = fit_probe({"identity": x}, y, {"identity": xv}, yv, 4, ("fixed",), (1e-4, 1e-2, 1.0))
    logits = xv @ fit.weight.T + fit.bias
    assert float((logits.argmax(1) == yv).float().mean()) == pytest.approx(fit.val_accuracy)
    assert fit.val_accuracy >= 0.95 and fit.train_accuracy >= 0.95
    assert fit.val_loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits.double(), yv)), rel=1e-4)


def test_flips_are_used_only_when_they_do_not_change_the_class():
    x, y = _blobs(60, 6, 3, seed=3)
    xv, yv = _blobs(300, 6, 3, seed=4)
    mirrored_x, mirrored_v = _blobs(60, 6, 3, seed=5)[0], _blobs(300, 6, 3, seed=6)[0]
    # mirrored images look like other images of the same class (textures, cells): mirroring is taken
    same = fit_probe({"identity": x, "hflip": mirrored_x}, y, {"identity": xv, "hflip": mirrored_v}, yv, 3,
                     ("fixed", "mirror"), (1e-3, 1e-1))
    assert same.view_set == "mirror"
    # a mirrored image looks like the next class (like a mirrored 2 and a 5): the classifier of the
    # originals does worse on mirrored validation images, so mirroring is refused
    shift = torch.arange(300) + 1 - 3 * ((torch.arange(300) % 3) == 2).long()
    other = xv[shift.clamp(max=299)]
    refused = fit_probe({"identity": x, "hflip": x[(torch.arange(60) + 1) % 60]}, y, {"identity": xv, "hflip": other},
                        yv, 3, ("fixed", "mirror", "free"), (1e-3, 1e-1))
    assert refused.view_set == "fixed"


def test_the_strongest_penalty_within_one_standard_error_is_taken():
    x, y = _blobs(300, 10, 2, seed=6)
    xv, yv = _blobs(300, 10, 2, seed=7)
    grid = (1e-5, 1e-3, 1e-1, 10.0, 1000.0)
    fit = fit_probe({"identity": x}, y, {"identity": xv}, yv, 2, ("fixed",), grid)
    assert fit.l2 in grid and fit.l2 < 1000.0          # a penalty that flattens the classifier is never within
    assert fit.l2 >= 1e-3                              # easy data: a strong penalty costs nothing on validation


def test_without_validation_images_the_middle_penalty_is_used():
    x, y = _blobs(60, 5, 3, seed=8)
    fit = fit_probe({"identity": x, "hflip": x}, y, {}, torch.zeros(0, dtype=torch.long), 3,
                    ("mirror", "fixed"), (1e-4, 1e-2, 1.0))
    assert fit.l2 == 1e-2 and fit.view_set == "mirror" and np.isnan(fit.val_loss)


def test_class_weights_find_the_small_class():
    x, y = _blobs(220, 4, 2, seed=9, shift=0.8)
    keep = torch.cat([torch.nonzero(y == 0).flatten(), torch.nonzero(y == 1).flatten()[:20]])   # 110 vs 20
    xv, yv = _blobs(200, 4, 2, seed=10, shift=0.8)
    recall = {}
    for name, weights in (("plain", None), ("weighted", torch.tensor([130 / 220, 130 / 40]))):
        fit = fit_probe({"identity": x[keep]}, y[keep], {"identity": xv}, yv, 2, ("fixed",), (1e-2,), weights)
        predicted = (xv @ fit.weight.T + fit.bias).argmax(1)
        recall[name] = float((predicted[yv == 1] == 1).float().mean())
    assert recall["weighted"] > recall["plain"]


def test_views_and_the_head_of_a_real_model():
    image = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert torch.equal(view("hflip", image)[..., 0, 0], image[..., 0, 3])
    assert torch.equal(view("vflip", image)[..., 0, 0], image[..., 2, 0])
    assert view("rot90", image).shape == (1, 1, 4, 3)
    for name in ("identity", "hflip", "vflip", "rot90"):      # a view and its inverse give the image back
        assert torch.equal(view(name, view(name, image), inverse=True), image)
    model, _ = create_model("efficientnet_lite0", "none", 3)
    assert has_linear_head(model)

