"""The run folder's detector file: the statistics of the check for unfamiliar images, and the pretrained network
beside a model made of small networks only (core.models.familiarity), as a checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.familiarity import BESIDE, STATISTICS, Detector, UnfamiliarityScore
from desktop_tl.core.runs import checkpoint


def save_detector(path: Path, detector: Detector, meta: dict[str, Any]) -> None:
    """Write the detector as a checkpoint (safetensors: tensors and JSON, never a pickle)."""
    checkpoint.save_checkpoint(path, detector, meta)


def load_detector(path: Path, beside_factory: Callable[[dict[str, Any]], nn.Module]) -> tuple[Detector, dict[str, Any]]:
    """The detector saved at `path`; `beside_factory(meta)` builds the untrained network beside the model when
    the file has one. UserError when the file is missing or damaged."""
    saved = checkpoint.load_checkpoint(path)
    try:
        score = UnfamiliarityScore({k: saved.model[f"score.{k}"] for k in STATISTICS})
        beside = None
        if saved.meta.get("features_from") == BESIDE:
            beside = beside_factory(saved.meta)
            beside.load_state_dict({k[len("beside."):]: v for k, v in saved.model.items() if k.startswith("beside.")})
    except (KeyError, RuntimeError) as exc:
        raise UserError(f"The run's {path.name} is damaged.",
                        f"Train the run again, or delete {path.name} to export without the check for unfamiliar images.") from exc
    return Detector(score, beside).eval(), saved.meta
