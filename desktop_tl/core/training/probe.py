"""The linear probe: a logistic regression fitted to convergence on features of the frozen backbone.

Features are computed once per view of each training and validation image (flipped or turned copies);
whether the orientation carries meaning, and the L2 penalty, are decided on the validation split (see
`probe_fit.fit_probe`; on small sets by cross-validation, `probe_fit.cross_validated_probe`); the result is written into the model's own classifier, so the probe is an ordinary
checkpoint that fine-tuning starts from (LP-FT), with the flips the probe found harmless.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from desktop_tl.core.data.loaders import make_loader
from desktop_tl.core.data.preprocess import Preprocessing
from desktop_tl.core.errors import UserError
from desktop_tl.core.evaluation.metrics import balanced_accuracy
from desktop_tl.core.events import BatchProgress, Message
from desktop_tl.core.models.ensemble import view as view_of
from desktop_tl.core.models.precision import autocast
from desktop_tl.core.training.plan import ProbeStage
from desktop_tl.core.training.probe_fit import ProbeFit, cross_validated_probe, fit_probe
from desktop_tl.core.training.session import TrainingSession


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
