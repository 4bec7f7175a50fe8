"""The one door to timm's model builder, and facts about an architecture that need no weights.

Every model the app builds goes through `build` (with weights, see `factory.create_model`; on the meta
device for structure only: parameter counts, tensor shapes, the layer tree, preprocessing).
"""

from __future__ import annotations

import difflib
from functools import cache, lru_cache
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config
from timm.models import get_pretrained_cfg

from desktop_tl.core.errors import UserError


def build(arch: str, num_classes: int | None = None, *, meta: bool = False, **kwargs: Any) -> torch.nn.Module:
    """timm's `arch` without pretrained weights (nothing is downloaded); on the meta device (structure and
    shapes only, no memory) when `meta`."""
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if meta:
        with torch.device("meta"):
            return timm.create_model(arch, pretrained=False, **kwargs)
    return timm.create_model(arch, pretrained=False, **kwargs)


@lru_cache(maxsize=1)
def all_names() -> frozenset[str]:
    """Every architecture timm can build."""
    return frozenset(timm.list_models())


def require_known(name: str) -> None:
    """UserError naming close matches when `name` is not an architecture timm knows."""
    if name in all_names():
        return
    arch, _, tag = name.partition(".")
    if tag and arch in all_names():
        raise UserError(f"{name!r} names pretrained weights, not a model architecture.",
                        f"Choose the model {arch!r}; cached weights appear as weights 'hf:timm/{name}'.")
    close = difflib.get_close_matches(name, sorted(all_names()), n=5, cutoff=0.6)
    hint = f"Did you mean {', '.join(close)}?" if close else "See `desktop-tl models` for the available names."
    raise UserError(f"Unknown model {name!r}.", hint)


@cache
def param_count(name: str) -> int | None:
    """Parameter count from a model built on the meta device (no memory, no weights)."""
    try:
        model = build(name, meta=True)
    except Exception:  # noqa: BLE001 - a few exotic architectures cannot be built on meta; size unknown
        return None
    return sum(p.numel() for p in model.parameters())


@cache
def state_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of `arch`'s state dict (with its pretrained class count)."""
    return {k: tuple(v.shape) for k, v in build(arch, meta=True).state_dict().items()}


def input_size(name: str) -> tuple[int, int, int]:
    """(channels, height, width) the architecture's pretrained weights expect."""
    cfg = get_pretrained_cfg(name)
    size = cfg.input_size if cfg is not None and cfg.input_size else (3, 224, 224)
    return (int(size[0]), int(size[1]), int(size[2]))


def classifier_prefixes(model_or_arch: torch.nn.Module | str) -> tuple[str, ...]:
    """Module names of the classification head, from timm's pretrained cfg (e.g. ("fc",), ("head.fc",))."""
    if isinstance(model_or_arch, str):
        cfg = timm.models.get_pretrained_cfg(model_or_arch)
        classifier = cfg.classifier if cfg is not None else None
    else:
        classifier = (getattr(model_or_arch, "pretrained_cfg", None) or {}).get("classifier")
    if not classifier:
        return ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def data_config(model: torch.nn.Module) -> dict[str, Any]:
    """Preprocessing the model expects (timm's resolved data config), JSON-safe.

    Keys: input_size [C, H, W], interpolation, mean, std, crop_pct, crop_mode. Feed it to
    `timm.data.create_transform(**data_config(model))`.
    """
    cfg = resolve_model_data_config(model)
    return {
        "input_size": [int(x) for x in cfg["input_size"]],
        "interpolation": str(cfg["interpolation"]),
        "mean": [float(x) for x in cfg["mean"]],
        "std": [float(x) for x in cfg["std"]],
        "crop_pct": float(cfg["crop_pct"]),
        "crop_mode": str(cfg["crop_mode"]),
    }
