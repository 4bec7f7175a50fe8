"""The untrained architecture a checkpoint's metadata names: a timm model, the small network trained from
scratch, or an ensemble of those; its weights are then loaded from the checkpoint."""

from __future__ import annotations

from typing import Any

from torch import nn

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.delivered import ENSEMBLE_ARCH, SCRATCH_ARCH
from desktop_tl.core.models.ensemble import VIEWS, Ensemble
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.models.scratch import scratch_from_meta

DAMAGED = UserError("A checkpoint of the run is damaged: the models it combines are not described properly.",
                    "Use the other checkpoint of the run (best or last), or train again.")


def architecture_for(meta: dict[str, Any], classes: int) -> nn.Module:
    """The model `meta["arch"]` describes, with `classes` outputs and no trained weights."""
    arch = meta.get("arch")
    if arch == SCRATCH_ARCH:
        return scratch_from_meta(classes, meta)
    if arch == ENSEMBLE_ARCH:
        members, views = meta.get("members"), meta.get("views")
        if not isinstance(members, list) or not members or not isinstance(views, list) or not views or \
                any(not isinstance(m, dict) or m.get("arch") == ENSEMBLE_ARCH for m in members) or \
                any(v not in VIEWS for v in views):
            raise DAMAGED
        return Ensemble([architecture_for(m, classes) for m in members], views)
    if not isinstance(arch, str):
        raise DAMAGED
    model, _ = create_model(arch, "none", classes)
    return model
