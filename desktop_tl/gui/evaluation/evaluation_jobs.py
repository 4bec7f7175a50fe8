"""The Evaluation panel's worker jobs (evaluate, report, label review, heat maps of mistakes), each a function
the worker runs with a JobContext; the engine modules are imported inside, on the worker, when first needed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_tl.gui.worker import JobContext


@dataclass(frozen=True)
class Evaluation:
    """What the Evaluate job returns: the metrics and where the run's images are."""

    run_dir: Path
    metrics: dict[str, Any]
    image_root: Path


class ImageRoots:
    """Where each run's images are (its dataset's root, read from the run folder once)."""

    def __init__(self) -> None:
        self._roots: dict[str, Path] = {}

    def remember(self, run_dir: Path, root: Path) -> None:
        """Note the root an evaluation found for `run_dir`."""
        self._roots[str(run_dir)] = root

    def root(self, run_dir: Path | None, fallback: Path | None) -> Path | None:
        """The run's image root; `fallback` without a run or when its dataset record cannot be read."""
        if run_dir is None:
            return fallback
        key = str(run_dir)
        if key not in self._roots:
            from desktop_tl.core.errors import UserError
            from desktop_tl.core.runs.folder import load_index

            try:
                self._roots[key] = load_index(run_dir).root
            except UserError:
                return fallback
        return self._roots[key]


def evaluate_job(run_dir: Path) -> Callable[[JobContext], Evaluation]:
    """Evaluate the run's best checkpoint on its validation and test splits."""
    def run(ctx: JobContext) -> Evaluation:
        from desktop_tl.core.evaluation.splits import evaluate_run
        from desktop_tl.core.runs.folder import load_index

        metrics = evaluate_run(run_dir)
        return Evaluation(run_dir, metrics, load_index(run_dir).root)
    return run


def report_job(run_dir: Path, out: Path, trial: dict[str, Any] | None = None) -> Callable[[JobContext], Path]:
    """Write the run's HTML report to `out` (with a silent trial's section when `trial` is given)."""
    def run(ctx: JobContext) -> Path:
        from desktop_tl.core.evaluation.report import write_report

        return write_report(run_dir, out, trial)
    return run


def review_job(run_dir: Path) -> Callable[[JobContext], tuple]:
    """Find the run's suspected label errors: (run_dir, its dataset index, the suspects)."""
    def run(ctx: JobContext) -> tuple:
        from desktop_tl.core.runs.folder import load_index
        from desktop_tl.core.training.label_review import review_labels

        return run_dir, load_index(run_dir), review_labels(run_dir)
    return run


def heatmap_job(model: Path, root: Path, paths: list[str]) -> Callable[[JobContext], dict[str, Any]]:
    """Heat maps (PIL images) of these dataset images from the exported model, by path."""
    def run(ctx: JobContext) -> dict[str, Any]:
        from desktop_tl.core.deploy.predict import OnnxClassifier

        classifier = OnnxClassifier(model, threads=2)
        found = classifier.predict_files([(root / p, p) for p in paths], heatmaps=True)
        return {p.path: p.heatmap for p in found if p.heatmap is not None}
    return run
