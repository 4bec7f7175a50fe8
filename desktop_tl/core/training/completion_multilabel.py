"""The end of a multi-label run: each label's calibration and threshold chosen on validation, then the test
split, evaluated once (core.evaluation.multilabel has the figures, core.label_rules the rules).

The single-label end (core.training.completion) also fits referral, prediction sets and the check for
unfamiliar images; those are single-label rules and a multi-label run has none of them yet (its model answers
every image, and the log says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from desktop_tl.core.atomic import atomic_write_json
from desktop_tl.core.evaluation.multilabel import choose_label_rules, label_cautions, multilabel_metrics
from desktop_tl.core.evaluation.splits import predict_split
from desktop_tl.core.events import Message, TrainEvent
from desktop_tl.core.label_rules import MULTI_LABEL, LabelRules
from desktop_tl.core.runs.folder import METRICS_FILE, write_run_info
from desktop_tl.core.training import distributed
from desktop_tl.core.training.completion import deliver_best
from desktop_tl.core.training.session import TrainingSession


def complete_multilabel(s: TrainingSession) -> Iterator[TrainEvent]:
    """Evaluate the best checkpoint of a multi-label run on validation (choosing each label's rule) and test;
    write metrics.json and mark the run finished (rank 0's part under torchrun)."""
    yield from deliver_best(s)
    classes = s.info.classes
    yield Message("info", f"Evaluating the best checkpoint (epoch {s.state['best_epoch']}) on {len(s.val_set)} "
                          f"validation and {len(s.index.split('test'))} test images…")
    val_raw, val_targets, val_paths = _predict(s, "val")
    rules = (choose_label_rules(val_targets, val_raw) if len(val_targets) else
             LabelRules((0.5,) * len(classes), (1.0,) * len(classes), "no held-out images", "default of 0.5"))
    yield Message("info", rules.words(classes))
    test_raw, test_targets, test_paths = _predict(s, "test")
    metrics: dict[str, Any] = {"task": MULTI_LABEL, "classes": classes, "checkpoint": "best",
                               "best_epoch": s.state["best_epoch"], "recipe": s.plan.recipe, "val_source": "validation",
                               "label_rules": rules.to_dict(),
                               "val": multilabel_metrics(val_targets, rules.calibrate(val_raw), classes, rules,
                                                         val_paths),
                               "test": multilabel_metrics(test_targets, rules.calibrate(test_raw), classes, rules,
                                                          test_paths)}
    metrics["cautions"] = label_cautions(metrics["test"])
    metrics["plan"] = s.plan.to_dict()
    metrics["plan_description"] = s.plan.describe()
    metrics["history"] = s.state["history"]
    metrics["near_duplicates"] = {"pairs": len(s.index.near_duplicates),
                                  "across_splits": sum(n.cross_split for n in s.index.near_duplicates)}
    metrics["skipped_during_training"] = s.state["skipped_images"]
    test = metrics["test"]
    if test["images"]:
        yield Message("info", f"Test split ({test['images']} images, evaluated once): the exact set of labels right "
                              f"for {test['exact_set_accuracy']['value']:.1%}, macro F1 {_figure(test['macro_f1'])}, "
                              f"micro F1 {_figure(test['micro_f1'])}.")
    yield Message("info", "A multi-label model answers every image: referring uncertain images and flagging "
                          "unfamiliar ones are not available for multi-label runs yet.")
    atomic_write_json(s.info.run_dir / METRICS_FILE, metrics)
    s.info.status, s.info.label_rules = "finished", rules
    write_run_info(s.info)
    distributed.barrier()
    yield s.finished(completed=True, stopped_by_user=False, metrics=metrics)


def _predict(s: TrainingSession, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(sigmoid probabilities, 0/1 targets, paths) of a split."""
    return predict_split(s.model, s.index, split, s.prep, s.info.classes, s.device, max(s.batch_size, 32),
                         s.cfg.num_workers, s.amp_dtype)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
