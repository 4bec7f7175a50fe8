"""Build a model with its weights: the architecture from timm (through `structure.build`), the weights
from an offline source (bundled, the Hugging Face cache, the model store or a file), a classifier for the
dataset's classes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from timm.models import PretrainedCfg

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.bundled import bundled_architectures
from desktop_tl.core.models.catalog import NONE_OPTION, describe_model
from desktop_tl.core.models.hf_cache import find_hf_cached, hf_cache_dir, hf_repo_config
from desktop_tl.core.models.store import find_imported
from desktop_tl.core.models.structure import build, classifier_prefixes, require_known
from desktop_tl.core.models.weight_files import WEIGHTS_SUFFIXES, fit_state_dict, load_weights_file, to_timm_names

_PRETRAINED_CFG_FIELDS = frozenset(f.name for f in fields(PretrainedCfg))


@dataclass(frozen=True)
class LoadedWeights:
    """What `create_model` initialised the model with; stored with a run."""

    id: str  # resolved: "bundled", "hf:<repo_id>", "imported:<id>", "file:<file name>" or "none"
    source: str  # "bundled" | "cache" | "imported" | "file" | "none"
    description: str
    pretrained: bool


def _unavailable(name: str, what: str) -> UserError:
    options = ", ".join(repr(o.id) for o in describe_model(name).weights)
    return UserError(what, f"Weights available for {name}: {options}. You can also import a weights file "
                           "made for this architecture, or give its path.")


def _hf_build_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """timm.create_model arguments that reproduce a cached repo: its preprocessing cfg and model args."""
    cfg = config.get("pretrained_cfg")
    overlay = {k: tuple(v) if isinstance(v, list) else v for k, v in (cfg if isinstance(cfg, dict) else {}).items()
               if k in _PRETRAINED_CFG_FIELDS}
    model_args = config.get("model_args")
    kwargs = {k: v for k, v in (model_args if isinstance(model_args, dict) else {}).items()
              if k not in ("num_classes", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay")}
    return {**kwargs, "pretrained_cfg_overlay": overlay}


def _resolve_weights(name: str, spec: str, kept: Path | None = None
                     ) -> tuple[dict[str, torch.Tensor] | None, LoadedWeights, dict[str, Any]]:
    """(state dict or None, what was chosen, extra create_model kwargs) for a weights option; imported weights
    the model store lacks are taken from `kept` (a run folder's copy) when it exists."""
    if spec == "none":
        return None, LoadedWeights("none", "none", NONE_OPTION.label, False), {}
    if spec == "bundled":
        loader = bundled_architectures().get(name)
        if loader is None:
            raise _unavailable(name, f"No weights for {name} are bundled with the app.")
        return loader(), LoadedWeights("bundled", "bundled", f"ImageNet-1k {name} weights bundled with the app",
                                       True), {}
    if spec == "hf" or spec.startswith("hf:"):
        cached = find_hf_cached(name)
        if spec == "hf":
            if not cached:
                raise _unavailable(name, f"No {name} weights in the Hugging Face cache ({hf_cache_dir()}).")
            repo_id, path = cached[0]
        else:
            repo_id = spec[len("hf:"):]
            found = dict(cached).get(repo_id)
            if found is None:
                raise _unavailable(name, f"{repo_id} is not in the Hugging Face cache ({hf_cache_dir()}) "
                                         f"as {name} weights.")
            path = found
        return (load_weights_file(path),
                LoadedWeights(f"hf:{repo_id}", "cache", f"{repo_id} from the Hugging Face cache", True),
                _hf_build_kwargs(hf_repo_config(path)))
    if spec.startswith("imported:"):
        wanted = spec[len("imported:"):]
        stored = find_imported(name, wanted)
        if stored is None and kept is not None and kept.is_file():
            return load_weights_file(kept), LoadedWeights(spec, "imported", f"{wanted} (the run folder's copy)",
                                                          True), {}
        if stored is None:
            raise _unavailable(name, f"No imported weights {wanted!r} for {name} in the model store.")
        description = f"{stored.original_name} (imported {stored.imported_at[:10]})"
        return load_weights_file(stored.path), LoadedWeights(spec, "imported", description, True), {}
    path = Path(spec).expanduser()
    if path.suffix.lower() in WEIGHTS_SUFFIXES or path.exists():
        # Only the file name is kept: the id travels into checkpoints and ONNX metadata, and a
        # directory can name a patient or a person.
        return load_weights_file(path), LoadedWeights(f"file:{path.name}", "file", path.name, True), {}
    raise _unavailable(name, f"Unknown weights option {spec!r} for {name}.")


def _head_classes(state: dict[str, torch.Tensor], name: str) -> int | None:
    """Number of classes of the weights' own classifier, when they have one."""
    for head in classifier_prefixes(name):
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def create_model(name: str, weights: str, num_classes: int, kept: Path | None = None
                 ) -> tuple[torch.nn.Module, LoadedWeights]:
    """Build timm's `name` initialised from `weights`, with a `num_classes` classifier.

    `weights`: "bundled" | "hf" (best cached repo) | "hf:<repo_id>" | "imported:<id>" | a path
    to a weights file | "none" (`kept`: a run folder's copy of imported weights, used when the model store
    lacks them). The model is built with the weights' own class count, loaded,
    then `reset_classifier(num_classes)` gives it a fresh head when the count differs.
    Raises UserError (WeightsMismatch for weights of another architecture).
    """
    require_known(name)
    state, loaded, build_kwargs = _resolve_weights(name, weights, kept)
    if state is None:
        return build(name, num_classes), loaded
    state = to_timm_names(state, name)
    source_classes = _head_classes(state, name) or num_classes
    model = build(name, source_classes, **build_kwargs)
    fit_state_dict(model, state, name, source=f"The weights {loaded.id!r}")
    if source_classes != num_classes:
        model.reset_classifier(num_classes)
    return model, loaded
