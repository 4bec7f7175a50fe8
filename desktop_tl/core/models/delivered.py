"""The models a run can deliver besides a timm network, by name, and the delivered model in words, from a
checkpoint's metadata. No torch: the runs list reads it."""

from __future__ import annotations

from typing import Any

SCRATCH_ARCH = "desktop_tl_small_cnn"
ENSEMBLE_ARCH = "desktop_tl_ensemble"


def delivered_model_words(meta: dict[str, Any], configured: str) -> str:
    """The delivered model in words, from its checkpoint metadata ("efficientnet_lite0", "average of
    efficientnet_lite0 and a small network", "efficientnet_lite0, averaged over flipped copies")."""
    names = {SCRATCH_ARCH: "a small network", ENSEMBLE_ARCH: "an ensemble"}
    if meta.get("arch") != ENSEMBLE_ARCH:
        return "small network trained from scratch" if meta.get("arch") == SCRATCH_ARCH else configured
    members = [names.get(m.get("arch"), m.get("arch") or configured) for m in meta.get("members") or []]
    text = members[0] if len(members) == 1 else f"average of {', '.join(members[:-1])} and {members[-1]}"
    if text == "a small network":
        text = "small network trained from scratch"
    return text + (", averaged over flipped or turned copies" if len(meta.get("views") or []) > 1 else "")
