"""The trained model of a run, rebuilt from one of its checkpoints (for evaluation and export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.rebuild import architecture_for
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import open_run


def model_from_checkpoint(run_dir: Path, which: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """The trained model (eval mode, CPU) and its checkpoint metadata."""
    info = open_run(run_dir)  # a clear message when the folder holds no run at all
    name = checkpoint.BEST if which == "best" else checkpoint.LAST
    ckpt = checkpoint.load_checkpoint(Path(run_dir) / name)
    meta = ckpt.meta
    damaged = UserError(f"The checkpoint {name} does not belong to this run or is damaged.",
                        "Use the other checkpoint of the run (--checkpoint best or last), or train again.")
    if meta.get("classes") != info.classes or not isinstance(meta.get("arch"), str) or \
            not isinstance(meta.get("preprocessing"), dict):
        raise damaged
    model = architecture_for(meta, len(meta["classes"]))
    try:
        model.load_state_dict(ckpt.model)
    except RuntimeError as exc:  # tensors missing or of the wrong shape
        raise damaged from exc
    return model.eval(), meta
