"""The Dataset panel's label-assist jobs, each a function the worker runs with a JobContext: score a folder of
unlabelled images with the run's exported model (core.deploy.label_assist, the engine of `desktop-tl suggest`),
and prepare a retrain (core.data.confirmed and core.runs.retrain). Engine modules are imported on the worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from desktop_tl.core.config import TrainConfig
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.gui.worker import JobContext

if TYPE_CHECKING:
    from desktop_tl.core.deploy.label_assist import Suggestion

HEATMAP_SIDE = 160      # heat maps are kept at tile size: a folder of a thousand images stays small in memory


@dataclass(frozen=True)
class Scored:
    """What the scoring job returns: the run's classes and the images not labelled yet, least certain first."""

    classes: list[str]
    suggestions: list[Suggestion]
    labels_csv: Path
    already: int          # images of the folder the labels CSV already lists (left out of `suggestions`)


def score_job(run_dir: Path, model: Path, folder: Path, labels_csv: Path) -> Callable[[JobContext], Scored]:
    """Rank the images under `folder` for labelling, with heat maps, paths relative to the labels CSV's folder."""
    def run(ctx: JobContext) -> Scored:
        from desktop_tl.core.data.confirmed import read_confirmed
        from desktop_tl.core.deploy.label_assist import rank_unlabelled
        from desktop_tl.core.runs.folder import open_run

        confirmed = read_confirmed(labels_csv)
        ranked = rank_unlabelled(model, folder, labels_csv.parent, heatmaps=True, progress=ctx.progress,
                                 should_stop=ctx.should_stop)
        for s in ranked:
            if s.heatmap is not None:
                s.heatmap.thumbnail((HEATMAP_SIDE, HEATMAP_SIDE))
        todo = [s for s in ranked if s.path not in confirmed]
        return Scored(open_run(run_dir).classes, todo, labels_csv, len(ranked) - len(todo))
    return run


@dataclass(frozen=True)
class Retraining:
    """What the retrain job returns: the dataset with the confirmed images in training, the new run's settings
    and what they start from, in words."""

    index: DatasetIndex
    config: TrainConfig
    note: str


def retrain_job(run_dir: Path, index: DatasetIndex, labels_csv: Path) -> Callable[[JobContext], Retraining]:
    """Join the confirmed labels to `index` (training split) and take the run's settings, starting from its best
    checkpoint; UserError when the dataset's classes are not the run's."""
    def run(ctx: JobContext) -> Retraining:
        from desktop_tl.core.data.confirmed import with_confirmed
        from desktop_tl.core.errors import UserError
        from desktop_tl.core.runs.folder import open_run
        from desktop_tl.core.runs.retrain import retrain_config

        if open_run(run_dir).classes != index.classes:
            raise UserError(f"The imported dataset's classes are not those of the run {run_dir.name}.",
                            "Import the dataset that run was trained on, then retrain.")
        enlarged = with_confirmed(index, labels_csv, ctx.progress, ctx.should_stop)
        retrain = retrain_config(run_dir)
        return Retraining(enlarged, retrain.config, retrain.note)
    return run
