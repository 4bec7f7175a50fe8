"""The linear probe: a logistic regression fitted to convergence on features of the frozen backbone.

Features are computed once per view of each training and validation image (flipped or turned copies);
whether the orientation carries meaning, and the L2 penalty, are decided on the validation split (see
`fit_probe`); the result is written into the model's own classifier, so the probe is an ordinary
checkpoint that fine-tuning starts from (LP-FT), with the flips the probe found harmless.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from desktop_tl.core.data.loaders import make_loader
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.metrics import balanced_accuracy
from desktop_tl.core.evaluation.selection import lower_loss_beyond_noise
from desktop_tl.core.events import BatchProgress, Message
from desktop_tl.core.models.ensemble import view as view_of
from desktop_tl.core.models.precision import autocast
from desktop_tl.core.training.plan import VIEW_SETS, ProbeStage
from desktop_tl.core.training.session import TrainingSession

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


def has_linear_head(model: nn.Module) -> bool:
    """True when the model's classifier is one nn.Linear with a bias (what the probe fits)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return isinstance(head, nn.Linear) and head.bias is not None


def splits_cleanly(model: nn.Module, prep: Preprocessing) -> bool:
    """True when the model is exactly classifier(forward_head(forward_features(x), pre_logits=True))
    with nothing random in between, so features of the frozen backbone can be computed once."""
    if not all(hasattr(model, a) for a in ("forward_features", "forward_head", "get_classifier")):
        return False
    if float(getattr(model, "drop_rate", 0.0) or 0.0) > 0:
        return False
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return False
        if float(getattr(module, "drop_prob", 0.0) or 0.0) > 0:
            return False
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.randn(2, 3, *prep.input_size, generator=torch.Generator().manual_seed(0))
            whole = model(x)
            split = model.get_classifier()(pre_logits(model, x))
            return whole.shape == split.shape and torch.allclose(whole, split, atol=1e-5, rtol=1e-4)
    except Exception:  # an architecture that does not follow timm's forward_head convention
        return False
    finally:
        model.train(was_training)


def pre_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pooled backbone features: what the classifier sees."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


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


@torch.no_grad()
def probe_epoch(s: TrainingSession, stage: ProbeStage, epoch: int):
    """Features of every training view and validation image through the frozen backbone (once), then the
    logistic regression chosen on validation, written into the classifier. Returns the epoch's figures,
    or None when stopped. (One pass over both splits with progress, then the fit: kept together.)"""
    s.model.eval()
    parts = {"train": (s.train_set(None), stage.views), "val": (s.val_set, stage.views)}
    loaders = {name: make_loader(ds, max(s.batch_size, 32), False, 0, 0 if s.world > 1 else s.workers())
               for name, (ds, _) in parts.items()}
    total = sum(len(loader) for loader in loaders.values())
    features: dict[str, dict[str, list[torch.Tensor]]] = {name: {v: [] for v in views}
                                                          for name, (_, views) in parts.items()}
    labels: dict[str, list[torch.Tensor]] = {"train": [], "val": []}
    paths: dict[str, list[str]] = {"train": [], "val": []}
    done, images = 0, 0
    started = time.perf_counter()
    for name, (dataset, views) in parts.items():
        loaded: list[int] = []
        try:
            for batch in s.batches(loaders[name]):
                if batch is None:
                    return None
                batch_images, batch_labels, items, skipped = batch
                done += 1
                s.state["skipped_images"] += skipped if name == "train" else 0
                if len(batch_labels):
                    batch_images = batch_images.to(s.device)
                    for view in views:
                        viewed = view_of(view, batch_images)
                        if s.layout.channels_last:
                            viewed = viewed.contiguous(memory_format=torch.channels_last)
                        with autocast(s.device, s.amp_dtype):
                            features[name][view].append(pre_logits(s.model, viewed).float().cpu())
                    labels[name].append(batch_labels)
                    loaded.extend(items.tolist())
                    paths[name].extend(dataset.samples[i].path for i in items.tolist())
                    images += len(batch_labels) * len(views)
                elapsed = time.perf_counter() - started
                yield BatchProgress(epoch, s.plan.total_epochs, done, total, math.nan, math.nan, 0.0,
                                    images / max(elapsed, 1e-9),
                                    _eta(s, elapsed * (total - done) / max(done, 1)), phase="features")
        finally:
            dataset.commit_cache(loaded)
    if not labels["train"]:
        raise UserError("No training image could be read.", "Check that the dataset folder is still there and readable.")
    train_features = {v: torch.cat(f) for v, f in features["train"].items()}
    val_features = {v: torch.cat(f) for v, f in features["val"].items()} if labels["val"] else {}
    val_labels = torch.cat(labels["val"]) if labels["val"] else torch.zeros(0, dtype=torch.long)
    weights = s.class_weights.cpu() if s.class_weights is not None else None
    train_labels = torch.cat(labels["train"])
    if s.plan.cross_validation and len(val_labels):
        return (yield from _cross_validated_epoch(s, stage, train_features, train_labels, val_features, val_labels,
                                                  paths, weights))
    fit = fit_probe(train_features, train_labels, val_features, val_labels, len(s.info.classes),
                    stage.view_sets, stage.l2_grid, weights)
    fit.install(s.model)
    s.state["probe"] = {"view_set": fit.view_set, "l2": fit.l2,
                        "val_balanced_accuracy": _balanced_accuracy(fit, val_features, val_labels)}
    choice = "chosen on validation" if len(val_labels) else "no validation images to choose with"
    yield Message("info", f"Linear probe: {VIEW_WORDS[fit.view_set]}, L2 penalty {fit.l2:g} ({choice}); validation "
                          f"loss {fit.val_loss:.3f}, accuracy {fit.val_accuracy:.1%}.")
    return fit.train_loss, fit.train_accuracy, fit.val_loss, fit.val_accuracy


VIEW_WORDS = {"fixed": "original images only (orientation matters here)",
              "mirror": "with mirrored copies (mirroring does not change the class)",
              "free": "with flipped and turned copies (orientation carries no meaning)"}


def _cross_validated_epoch(s: TrainingSession, stage: ProbeStage, train_features, train_labels, val_features,
                           val_labels, paths: dict[str, list[str]], weights):
    """The probe of a small dataset: view set and penalty chosen by cross-validation over train+val (the
    out-of-fold predictions are kept for the later choices, in the run state). The classifier is then fitted
    on the training split alone when fine-tuning follows (it validates on the validation split), else on
    train+val: the delivered probe learns from every label but the test split's."""
    pooled = {v: torch.cat([train_features[v], val_features[v]]) for v in train_features}
    pooled_labels = torch.cat([train_labels, val_labels])
    pooled_paths = paths["train"] + paths["val"]
    fold_of = s.fold_of()
    folds = [fold_of[p] for p in pooled_paths]
    classes = len(s.info.classes)
    cv = cross_validated_probe(pooled, pooled_labels, folds, classes, stage.view_sets, stage.l2_grid, weights)
    refit_on_all = s.plan.stage("finetune") is None
    if refit_on_all:
        fit = fit_probe(pooled, pooled_labels, {}, torch.zeros(0, dtype=torch.long), classes, (cv.view_set,),
                        (cv.l2,), weights)
    else:
        fit = fit_probe(train_features, train_labels, val_features, val_labels, classes, (cv.view_set,), (cv.l2,),
                        weights)
    fit.install(s.model)
    oof_balanced = balanced_accuracy(pooled_labels.numpy(), cv.oof_probabilities.argmax(1).numpy(), classes)
    s.state["probe"] = {"view_set": cv.view_set, "l2": cv.l2, "val_balanced_accuracy": oof_balanced,
                        "chosen_by": "cross-validation", "test_time_views": list(cv.test_time_views)}
    s.state["cross_validation"] = {
        "folds": len(set(folds)), "paths": pooled_paths, "labels": pooled_labels.tolist(),
        "fold": folds, "oof": {"probe": [[round(float(v), 5) for v in row] for row in cv.oof_probabilities]},
        "trained_on_all": "probe" if refit_on_all else None}
    where = "the training and validation images" if refit_on_all else "the training split (fine-tuning follows)"
    averaged = (f" Predictions are averaged over the flipped or turned copies at prediction time: out-of-fold loss "
                f"{cv.plain_oof_loss:.3f} -> {cv.oof_loss:.3f}, lower beyond the noise."
                if cv.plain_oof_loss is not None else "")
    yield Message("info", f"Linear probe: {VIEW_WORDS[cv.view_set]}, L2 penalty {cv.l2:g}, chosen by "
                          f"{len(set(folds))}-fold cross-validation over {len(pooled_labels)} images: out-of-fold "
                          f"loss {cv.oof_loss:.3f}, accuracy {cv.oof_accuracy:.1%}, balanced accuracy "
                          f"{oof_balanced:.1%}. The classifier is fitted on {where}.{averaged}")
    if refit_on_all:    # the epoch's figures are the out-of-fold ones: no image left to validate on
        return fit.train_loss, fit.train_accuracy, cv.oof_loss, cv.oof_accuracy
    return fit.train_loss, fit.train_accuracy, fit.val_loss, fit.val_accuracy


def _balanced_accuracy(fit: ProbeFit, val_features: dict[str, torch.Tensor], val_labels: torch.Tensor) -> float | None:
    """The fitted probe's balanced accuracy on the validation images (None without any)."""
    if len(val_labels) == 0:
        return None
    predicted = (val_features["identity"].float() @ fit.weight.T + fit.bias).argmax(1)
    return balanced_accuracy(val_labels.numpy(), predicted.numpy(), len(fit.bias))


def _eta(s: TrainingSession, this_epoch_left: float) -> float:
    """Seconds left in the run: what remains of this epoch, plus the plan's estimate of what follows it."""
    estimate = s.plan.estimated_seconds
    later = sum(v for k, v in estimate.items() if k in ("finetune", "baseline", "evaluation"))
    return max(0.0, this_epoch_left + later)
