"""The weights a run trains from: the best offline option by default, a known weights id as given, or a file
the user points at, imported into the model store first, so that its path (paths can name patients) never
reaches the run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NAMED_WEIGHTS = ("bundled", "hf", "none")
WEIGHTS_PREFIXES = ("hf:", "imported:")


@dataclass(frozen=True)
class WeightsChoice:
    """The run's `weights` setting, with what the user should be told about it."""

    id: str
    note: str = ""       # what was done on the way (a file imported into the store)
    warning: str = ""    # why the run will not start from pretrained weights


def choose_weights(model: str, weights: str | None) -> WeightsChoice:
    """The weights id for a run of `model` given the user's `weights` (None or "": the best offline option;
    a weights id; or a weights file, imported into the store)."""
    from desktop_tl.core.models.catalog import describe_model
    from desktop_tl.core.models.store import import_weights

    if not weights:
        best = describe_model(model).best_weights
        warning = "" if best.pretrained else (f"No pretrained weights for {model} are available offline; training "
                                              "from random initialisation. See `desktop-tl models`.")
        return WeightsChoice(best.id, warning=warning)
    if weights in NAMED_WEIGHTS or weights.startswith(WEIGHTS_PREFIXES):
        return WeightsChoice(weights)
    stored = import_weights(Path(weights), model)
    return WeightsChoice(f"imported:{stored.id}",
                         note=f"Imported {Path(weights).name} into the model store as imported:{stored.id}.")
