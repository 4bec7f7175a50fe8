"""Retrain after label assist: the settings of a finished run for a new run that starts from that run's best
checkpoint instead of the pretrained weights. The checkpoint's model weights go into the app's model store as
imported weights (`imported:ID`, the way a user's own weights file does), so the new run folder names no file
outside itself and trains, resumes, evaluates and exports like any other run."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from desktop_tl.core.config import TrainConfig
from desktop_tl.core.errors import UserError
from desktop_tl.core.models.delivered import delivered_model_words
from desktop_tl.core.models.store import import_weights
from desktop_tl.core.models.weight_files import write_safetensors
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import open_run

# The weights' name in the model store: no folder name, which could name a patient.
CONTINUED_NAME = "best-checkpoint-of-an-earlier-run.safetensors"


@dataclass(frozen=True)
class Retrain:
    """The settings of the new run and what they start from."""

    config: TrainConfig
    continued: bool      # True: the weights are the earlier run's best checkpoint
    note: str            # what the new run starts from, in words


def retrain_config(run_dir: Path) -> Retrain:
    """The finished run's settings with its best checkpoint as the starting weights; when the checkpoint holds
    another model than the settings name (the small network the transfer check trains from scratch), the
    settings as they were, and the note says so. UserError for a run that has not finished."""
    run_dir = Path(run_dir)
    info = open_run(run_dir)
    if not info.finished:
        raise UserError(f"The run {run_dir.name} has not finished, so it has no best model to continue from.",
                        "Finish (or resume) that run first, or retrain from another one.")
    best = checkpoint.load_checkpoint(run_dir / checkpoint.BEST)
    arch = best.meta.get("arch")
    if arch != info.config.model:
        what = "the " + delivered_model_words(best.meta, str(arch))
        return Retrain(info.config, False, f"The run's best model is {what}, not {info.config.model}: the new "
                                           f"run starts from the {info.config.weights} weights, as that run did, "
                                           "and the recipe chooses again.")
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / CONTINUED_NAME
        write_safetensors(plain, {name: tensor.contiguous() for name, tensor in best.model.items()})
        stored = import_weights(plain, arch)
    return Retrain(replace(info.config, weights=f"imported:{stored.id}"), True,
                   f"The new run starts from the best checkpoint of {run_dir.name} (imported:{stored.id}).")
