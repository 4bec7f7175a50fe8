"""The models a run can deliver besides a timm network, by name, and the delivered model in words, from a
checkpoint's metadata. No torch: the runs list reads it."""

from __future__ import annotations

from typing import Any

SCRATCH_ARCH = "desktop_tl_small_cnn"
ENSEMBLE_ARCH = "desktop_tl_ensemble"


def delivered_model_words(meta: dict[str, Any], configured: str) -> str:
    """The delivered model in words, from its checkpoint metadata ("efficientnet_lite0", "small network
    trained from scratch", "average of efficientnet_lite0 and a small network trained from scratch", "average
    of 3 small networks trained from scratch", each with ", averaged over flipped or turned copies" when so)."""
    if meta.get("arch") == SCRATCH_ARCH:
        return "small network trained from scratch"
    if meta.get("arch") != ENSEMBLE_ARCH:
        return configured
    members = [m.get("arch") for m in meta.get("members") or [] if isinstance(m, dict)]
    small = members.count(SCRATCH_ARCH)
    named = [configured if arch is None else arch for arch in members if arch != SCRATCH_ARCH]
    others = [name if named.count(name) == 1 else f"{named.count(name)} fine-tuned {name} networks (other seeds)"
              for name in dict.fromkeys(named)]
    if small:
        others.append("a small network trained from scratch" if small == 1 else
                      f"{small} small networks trained from scratch")
    if len(members) == 1:
        text = "small network trained from scratch" if small else others[0]
    elif len(others) == 1:     # several small networks, or several fine-tuned networks, alone
        text = f"average of {others[0]}"
    else:
        text = f"average of {', '.join(others[:-1])} and {others[-1]}"
    return text + (", averaged over flipped or turned copies" if len(meta.get("views") or []) > 1 else "")
