"""The linear probe's fit on features already computed: multinomial logistic regression with an L2 penalty,
fitted to convergence (L-BFGS), its feature scaling, and the choice of view set and penalty, on the validation
split (`fit_probe`) or, on small sets, by cross-validation over train+val (`cross_validated_probe`). The stage
that computes the features and writes the fit into the model is `probe`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from desktop_tl.core.evaluation.selection import lower_loss_beyond_noise
from desktop_tl.core.training.plan import VIEW_SETS

LBFGS_ITERATIONS = 100       # per penalty, each warm-started from the last: enough to converge (see fit_logistic)
GRADIENT_TOLERANCE = 1e-5
LOSS_TOLERANCE = 0.01        # validation losses closer than this (nats per image) count as equal


@dataclass(frozen=True)
class ProbeFit:
    """The fitted classifier and how it was chosen."""

    weight: torch.Tensor          # (classes, features), for the model's own linear classifier
    bias: torch.Tensor            # (classes,)
    view_set: str                 # key of plan.VIEW_SETS
    l2: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float

    def install(self, model: nn.Module) -> None:
        """Write the classifier into `model` (timm's `get_classifier()`, an nn.Linear)."""
        head = model.get_classifier()
        with torch.no_grad():
            head.weight.copy_(self.weight.to(head.weight))
            head.bias.copy_(self.bias.to(head.bias))



def _weighted_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels, weight=class_weights)


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, classes: int, l2: float,
                 class_weights: torch.Tensor | None = None,
                 start: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression with an L2 penalty on the weights, fitted to convergence with
    full-batch L-BFGS (until no gradient entry exceeds GRADIENT_TOLERANCE, or LBFGS_ITERATIONS);
    returns (weight (classes, features), bias) in float64. `features` should be centred and scaled
    (see `FeatureScaling`); `start` warm-starts the fit. The fit itself runs in float32: on 1,280 features it
    reaches the same optimum as float64 (validation loss within 1e-3) four to six times as fast."""
    weight = torch.zeros(classes, features.shape[1])
    bias = torch.zeros(classes)
    if start is not None:
        weight, bias = start[0].float().clone(), start[1].float().clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    x = features.float()
    w = class_weights.float() if class_weights is not None else None
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=LBFGS_ITERATIONS, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=GRADIENT_TOLERANCE,
                                  tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _weighted_loss(x @ weight.T + bias, labels, w) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().double(), bias.detach().double()


@dataclass(frozen=True)
class FeatureScaling:
    """Centre the features and divide by one overall spread: the penalty then treats every feature alike,
    and the fit folds back into the raw-feature classifier without blowing up near-constant features."""

    mean: torch.Tensor
    scale: float

    @classmethod
    def of(cls, features: torch.Tensor) -> FeatureScaling:
        mean = features.double().mean(0)
        return cls(mean, float((features.double() - mean).square().mean().sqrt()) or 1.0)

    def apply(self, features: torch.Tensor) -> torch.Tensor:
        return (features.double() - self.mean) / self.scale

    def fold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The classifier on raw features equal to (weight, bias) on scaled ones."""
        raw_weight = weight / self.scale
        return raw_weight, bias - raw_weight @ self.mean


def _figures(weight, bias, features, labels, class_weights) -> tuple[float, float, float]:
    """(mean loss, accuracy, standard error of the mean loss) of a fit on some features."""
    with torch.no_grad():
        logits = features @ weight.T + bias
        weights = class_weights.double() if class_weights is not None else None
        per_image = nn.functional.cross_entropy(logits, labels, weight=weights, reduction="none")
        scale = weights[labels] if weights is not None else torch.ones_like(per_image)
        loss = float(per_image.sum() / scale.sum())       # the weighted mean, as the training loss has it
        spread = float((per_image / scale.mean()).std() / max(1.0, len(labels) ** 0.5)) if len(labels) > 1 else 0.0
        return loss, float((logits.argmax(1) == labels).double().mean()), spread


def fit_probe(train_features: dict[str, torch.Tensor], train_labels: torch.Tensor,
              val_features: dict[str, torch.Tensor], val_labels: torch.Tensor, classes: int,
              view_sets: Sequence[str], l2_grid: Sequence[float],
              class_weights: torch.Tensor | None = None) -> ProbeFit:
    """The logistic regression chosen on validation (see the module docstring).

    The first view set (the original images) is fitted first. A set with more flips or turns is taken only
    when its transformations preserve the labels: the classifier fitted on original images must do as well
    on the transformed validation images as on the originals (within a standard error). On digits a turned
    6 reads as a 9 and the loss rises, so turns are refused; on textures or cells nothing changes, so they are
    taken. The richer set must also not be worse on the original validation images. Within a set, the
    strongest L2 penalty whose validation loss is within a standard error (at least LOSS_TOLERANCE) of the
    set's best: a small, calibrated classifier that fine-tuning starts gently from, also where validation is
    separable. Penalties are fitted from the strongest down, each warm-started from the last. Without
    validation images the middle of the grid and the first view set are taken.
    """
    scaling = FeatureScaling.of(train_features["identity"])
    has_val = len(val_labels) > 0
    if not has_val:
        view_sets, l2_grid = view_sets[:1], [sorted(l2_grid)[len(l2_grid) // 2]]
    val = {v: scaling.apply(f) for v, f in val_features.items()} if has_val else {}

    def choose(view_set: str) -> tuple[float, torch.Tensor, torch.Tensor, tuple[float, float, float]]:
        views = VIEW_SETS[view_set]
        x = scaling.apply(torch.cat([train_features[v] for v in views]))
        y = train_labels.repeat(len(views))
        path, start = [], None
        for l2 in sorted(l2_grid, reverse=True):
            weight, bias = fit_logistic(x, y, classes, l2, class_weights, start)
            start = (weight, bias)
            figures = (_figures(weight, bias, val["identity"], val_labels, class_weights) if has_val
                       else (float("nan"), float("nan"), 0.0))
            path.append((l2, weight, bias, figures))
        loss, _, spread = min((p[3] for p in path), key=lambda f: f[0])
        return next(p for p in path if not p[3][0] > loss + max(spread, LOSS_TOLERANCE)) if has_val else path[0]

    chosen, fit = view_sets[0], choose(view_sets[0])
    plain = fit
    for candidate in view_sets[1:]:
        limit = plain[3][0] + max(plain[3][2], LOSS_TOLERANCE)
        extra = [v for v in VIEW_SETS[candidate] if v != "identity"]
        if not has_val or any(_figures(plain[1], plain[2], val[v], val_labels, class_weights)[0] > limit
                              for v in extra):
            break                                 # this transformation changes what the images show
        richer = choose(candidate)
        if richer[3][0] <= limit:
            chosen, fit = candidate, richer
    l2, weight, bias, (val_loss, val_acc, _) = fit
    train_loss, train_acc, _ = _figures(weight, bias, scaling.apply(train_features["identity"]), train_labels,
                                        class_weights)
    raw_weight, raw_bias = scaling.fold(weight, bias)
    return ProbeFit(raw_weight.float(), raw_bias.float(), chosen, l2, train_loss, train_acc, val_loss, val_acc)


def _per_image_losses(probs: torch.Tensor, labels: torch.Tensor,
                      class_weights: torch.Tensor | None) -> tuple[float, float]:
    """(weighted mean log loss, its standard error) of out-of-fold probabilities, as `_figures` has them."""
    per_image = -torch.log(probs[torch.arange(len(labels)), labels].clamp_min(1e-12))
    scale = class_weights.double()[labels] if class_weights is not None else torch.ones_like(per_image)
    weighted = per_image * scale
    spread = float((weighted / scale.mean()).std() / max(1.0, len(labels) ** 0.5)) if len(labels) > 1 else 0.0
    return float(weighted.sum() / scale.sum()), spread


@dataclass(frozen=True)
class CrossValidatedProbe:
    """The probe's view set and penalty chosen on out-of-fold predictions, and those predictions."""

    view_set: str
    l2: float
    oof_probabilities: torch.Tensor     # (images, classes): each image predicted by the fit without its fold
    oof_loss: float
    oof_accuracy: float
    test_time_views: tuple[str, ...] = ("identity",)   # the views averaged at prediction time
    plain_oof_loss: float | None = None                 # before that averaging, when it was taken


def cross_validated_probe(features: dict[str, torch.Tensor], labels: torch.Tensor, folds: Sequence[int],
                          classes: int, view_sets: Sequence[str], l2_grid: Sequence[float],
                          class_weights: torch.Tensor | None = None) -> CrossValidatedProbe:
    """`fit_probe`'s rules applied to out-of-fold predictions over every training and validation image (features
    of each view, labels, a fold per image) instead of one validation split: per view set, each fold's
    penalties are fitted from the strongest down (warm-started) on the other folds and predict the fold; the
    strongest penalty within a standard error of the best out-of-fold loss is taken; a richer view set only
    when the plain classifiers do as well on the flipped or turned held-out images as on the originals, and
    its own out-of-fold loss is no worse."""
    fold = torch.as_tensor(list(folds))
    grid = sorted(l2_grid, reverse=True)

    def out_of_fold(view_set: str, extra_views: Sequence[str] = ()) -> dict[str, list[torch.Tensor]]:
        """{view: [oof probabilities per penalty of the grid]} of the identity view and `extra_views`."""
        views = VIEW_SETS[view_set]
        shown = ("identity", *extra_views)
        oof = {v: [torch.zeros(len(labels), classes, dtype=torch.float64) for _ in grid] for v in shown}
        for f in fold.unique().tolist():
            held, kept = fold == f, fold != f
            scaling = FeatureScaling.of(features["identity"][kept])
            x = scaling.apply(torch.cat([features[v][kept] for v in views]))
            y = labels[kept].repeat(len(views))
            start = None
            for k, l2 in enumerate(grid):
                weight, bias = fit_logistic(x, y, classes, l2, class_weights, start)
                start = (weight, bias)
                for v in shown:
                    logits = scaling.apply(features[v][held]) @ weight.T + bias
                    oof[v][k][held] = torch.softmax(logits, 1)
        return oof

    def choose(oof: list[torch.Tensor]) -> tuple[int, float, float]:
        figures = [_per_image_losses(p, labels, class_weights) for p in oof]
        best, spread = min(figures, key=lambda f: f[0])
        k = next(k for k, f in enumerate(figures) if not f[0] > best + max(spread, LOSS_TOLERANCE))
        return k, figures[k][0], max(figures[k][1], LOSS_TOLERANCE)

    extras = sorted({v for s in view_sets for v in VIEW_SETS[s] if v != "identity"})
    plain = out_of_fold(view_sets[0], extras)
    k, loss, tolerance = choose(plain["identity"])
    chosen, chosen_k, chosen_loss, chosen_oof = view_sets[0], k, loss, plain
    for candidate in view_sets[1:]:
        added = [v for v in VIEW_SETS[candidate] if v != "identity"]
        if any(_per_image_losses(plain[v][k], labels, class_weights)[0] > loss + tolerance for v in added):
            break                                 # this transformation changes what the images show
        richer = out_of_fold(candidate, added)
        rk, rloss, _ = choose(richer["identity"])
        if rloss <= loss + tolerance:
            chosen, chosen_k, chosen_loss, chosen_oof = candidate, rk, rloss, richer
    probs = chosen_oof["identity"][chosen_k]
    views = VIEW_SETS[chosen]
    averaged = torch.stack([chosen_oof[v][chosen_k] for v in views]).mean(0)
    cv = CrossValidatedProbe(chosen, grid[chosen_k], probs.float(), chosen_loss,
                             float((probs.argmax(1) == labels).double().mean()))
    if len(views) > 1 and lower_loss_beyond_noise(labels.numpy(), probs.numpy(), averaged.numpy()):
        cv = replace(cv, oof_probabilities=averaged.float(), test_time_views=views, plain_oof_loss=chosen_loss,
                     oof_loss=_per_image_losses(averaged, labels, class_weights)[0],
                     oof_accuracy=float((averaged.argmax(1) == labels).double().mean()))
    return cv
