"""The model catalog: which timm architectures the app offers and which offline weights each has.

Weights options, best first: "bundled" (shipped with the app), "hf:<repo_id>" (the local
Hugging Face cache), "imported:<id>" (files imported into the model store), "none" (random
initialisation). Nothing here downloads.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections import defaultdict
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config
from timm.models import PretrainedCfg, get_pretrained_cfg

from desktop_tl.core.errors import UserError
from desktop_tl.core.weights import (
    WEIGHTS_SUFFIXES,
    StoredWeights,
    bundled_architectures,
    classifier_prefixes,
    find_hf_cached,
    fit_state_dict,
    hf_cache_dir,
    hf_cached_by_arch,
    hf_repo_config,
    list_imported,
    load_weights_file,
    to_timm_names,
)

SHORTLIST: tuple[str, ...] = (
    "efficientnet_lite0",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "convnext_nano",
    "convnext_tiny",
    "vit_small_patch16_224",
    "regnety_008",
)

_DESCRIPTIONS = {
    "efficientnet_lite0": "EfficientNet-Lite0: small and fast on a CPU; ImageNet weights ship with the app",
    "mobilenetv3_small_100": "MobileNetV3 Small: the tiniest and fastest, for quick tries on modest laptops",
    "mobilenetv3_large_100": "MobileNetV3 Large: small and fast on a CPU",
    "resnet18": "ResNet-18: classic, robust baseline; fast on a CPU",
    "resnet34": "ResNet-34: deeper classic ResNet; moderate speed on a CPU",
    "resnet50": "ResNet-50: the standard strong baseline; slow on a CPU, fine on a GPU",
    "efficientnet_b0": "EfficientNet-B0: accurate for its small size; fast on a CPU",
    "convnext_nano": "ConvNeXt Nano: modern CNN with good accuracy; medium speed",
    "convnext_tiny": "ConvNeXt Tiny: modern CNN with strong accuracy; best with a GPU",
    "vit_small_patch16_224": "ViT Small/16: vision transformer; best with a GPU and a few thousand images",
    "regnety_008": "RegNetY-800MF: efficient CNN; fast on a CPU",
}

# include_all searches matching more names than this list params=None for non-shortlisted
# entries, so that searching all ~1,400 timm architectures stays instant.
PARAMS_SEARCH_LIMIT = 40

_PRETRAINED_CFG_FIELDS = frozenset(f.name for f in fields(PretrainedCfg))


@dataclass(frozen=True)
class WeightOption:
    """One way to initialise a model: `id` is what `create_model(..., weights=id)` accepts."""

    id: str  # "bundled" | "hf:<repo_id>" | "imported:<sha256[:16]>" | "none"
    source: str  # "bundled" | "cache" | "imported" | "none"
    label: str
    pretrained: bool


NONE_OPTION = WeightOption("none", "none", "random initialisation (not pretrained)", False)


@dataclass(frozen=True)
class ModelEntry:
    """A catalog row: an architecture, its size and the weights available for it offline."""

    name: str
    params: int | None
    input_size: tuple[int, int, int]
    shortlisted: bool
    description: str
    weights: tuple[WeightOption, ...]  # best first; always ends with NONE_OPTION

    @property
    def best_weights(self) -> WeightOption:
        """The option to preselect: the first (best) one."""
        return self.weights[0]


@dataclass(frozen=True)
class LoadedWeights:
    """What `create_model` initialised the model with; stored with a run."""

    id: str  # resolved: "bundled", "hf:<repo_id>", "imported:<id>", "file:<file name>" or "none"
    source: str  # "bundled" | "cache" | "imported" | "file" | "none"
    description: str
    pretrained: bool


# --------------------------------------------------------------------------- listing


@lru_cache(maxsize=1)
def _all_names() -> frozenset[str]:
    return frozenset(timm.list_models())


@lru_cache(maxsize=None)
def _param_count(name: str) -> int | None:
    """Parameter count from a model built on the meta device (no memory, no weights)."""
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception:  # noqa: BLE001 - a few exotic architectures cannot be built on meta; size unknown
        return None
    return sum(p.numel() for p in model.parameters())


def _input_size(name: str) -> tuple[int, int, int]:
    cfg = get_pretrained_cfg(name)
    size = cfg.input_size if cfg is not None and cfg.input_size else (3, 224, 224)
    return (int(size[0]), int(size[1]), int(size[2]))


def _size_hint(params: int | None) -> str:
    if params is None:
        return ""
    if params < 8_000_000:
        return "; small and fast on a CPU"
    if params < 30_000_000:
        return "; medium size"
    if params < 100_000_000:
        return "; large, best with a GPU"
    return "; very large, needs a GPU"


def _description(name: str, params: int | None) -> str:
    if name in _DESCRIPTIONS:
        return _DESCRIPTIONS[name]
    family = timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1].replace("_", " ")
    return f"{family} family from timm{_size_hint(params)}"


def _matches(name: str, query: str) -> bool:
    query = query.strip().lower()
    if not query:
        return True
    if any(ch in query for ch in "*?["):
        return fnmatch.fnmatchcase(name, query)
    return query in name


def _weight_options(name: str, bundled: set[str], cached: list[tuple[str, Path]],
                    imported: list[StoredWeights]) -> tuple[WeightOption, ...]:
    options = []
    if name in bundled:
        options.append(WeightOption("bundled", "bundled", "ImageNet-1k (bundled with the app)", True))
    options += [WeightOption(f"hf:{repo_id}", "cache", f"{repo_id} (Hugging Face cache)", True)
                for repo_id, _ in cached]
    options += [WeightOption(f"imported:{s.id}", "imported",
                             f"{s.original_name} (imported {s.imported_at[:10]})", True) for s in imported]
    options.append(NONE_OPTION)
    return tuple(options)


_Sources = tuple[set[str], dict[str, list[tuple[str, Path]]], dict[str, list[StoredWeights]]]


def _weight_sources() -> _Sources:
    """Bundled architectures, cached repos and imported files by architecture, gathered once."""
    imported: dict[str, list[StoredWeights]] = defaultdict(list)
    for stored in list_imported():
        imported[stored.arch].append(stored)
    return set(bundled_architectures()), hf_cached_by_arch(), imported


def _entries(names: list[str], with_params: bool, sources: _Sources) -> list[ModelEntry]:
    bundled, cached, imported = sources
    entries = []
    for name in names:
        params = _param_count(name) if with_params or name in SHORTLIST else None
        entries.append(ModelEntry(
            name=name,
            params=params,
            input_size=_input_size(name),
            shortlisted=name in SHORTLIST,
            description=_description(name, params),
            weights=_weight_options(name, bundled, cached.get(name, []), imported.get(name, [])),
        ))
    return entries


def list_models(query: str = "", include_all: bool = False) -> list[ModelEntry]:
    """Catalog entries whose name contains `query` (or matches it as a wildcard like "resnet*").

    By default: the shortlist, plus any architecture with bundled, cached or imported
    weights. With `include_all`, every timm architecture; then, when more than
    PARAMS_SEARCH_LIMIT names match, non-shortlisted entries get params=None to stay fast.
    """
    sources = _weight_sources()
    if include_all:
        names = sorted(_all_names())
    else:
        bundled, cached, imported = sources
        extra = (bundled | set(cached) | set(imported)) & _all_names()
        names = [*SHORTLIST, *sorted(extra - set(SHORTLIST))]
    names = [n for n in names if _matches(n, query)]
    return _entries(names, not include_all or len(names) <= PARAMS_SEARCH_LIMIT, sources)


def _require_known(name: str) -> None:
    if name in _all_names():
        return
    arch, _, tag = name.partition(".")
    if tag and arch in _all_names():
        raise UserError(f"{name!r} names pretrained weights, not a model architecture.",
                        f"Choose the model {arch!r}; cached weights appear as weights 'hf:timm/{name}'.")
    close = difflib.get_close_matches(name, sorted(_all_names()), n=5, cutoff=0.6)
    hint = f"Did you mean {', '.join(close)}?" if close else "See `desktop-tl models` for the available names."
    raise UserError(f"Unknown model {name!r}.", hint)


def describe_model(name: str) -> ModelEntry:
    """The catalog entry for one architecture (any timm name); UserError suggesting close names if unknown."""
    _require_known(name)
    return _entries([name], True, _weight_sources())[0]


def format_models_table(entries: list[ModelEntry]) -> str:
    """Aligned plain-text table: name, parameters (millions), input size, weights options."""
    if not entries:
        return "No models match."
    rows = [("MODEL", "PARAMS", "INPUT", "WEIGHTS")]
    for e in entries:
        params = f"{e.params / 1e6:.1f}M" if e.params is not None else "?"
        rows.append((e.name, params, f"{e.input_size[1]}x{e.input_size[2]}", ", ".join(w.id for w in e.weights)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


# --------------------------------------------------------------------------- building models


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


def _resolve_weights(name: str, spec: str) -> tuple[dict[str, torch.Tensor] | None, LoadedWeights, dict[str, Any]]:
    """(state dict or None, what was chosen, extra create_model kwargs) for a weights option."""
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
        stored = next((s for s in list_imported(name) if s.id == wanted), None)
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


def create_model(name: str, weights: str, num_classes: int) -> tuple[torch.nn.Module, LoadedWeights]:
    """Build timm's `name` initialised from `weights`, with a `num_classes` classifier.

    `weights`: "bundled" | "hf" (best cached repo) | "hf:<repo_id>" | "imported:<id>" | a path
    to a weights file | "none". The model is built with the weights' own class count, loaded,
    then `reset_classifier(num_classes)` gives it a fresh head when the count differs.
    Raises UserError (WeightsMismatch for weights of another architecture).
    """
    _require_known(name)
    state, loaded, build_kwargs = _resolve_weights(name, weights)
    if state is None:
        return timm.create_model(name, pretrained=False, num_classes=num_classes), loaded
    state = to_timm_names(state, name)
    source_classes = _head_classes(state, name) or num_classes
    model = timm.create_model(name, pretrained=False, num_classes=source_classes, **build_kwargs)
    fit_state_dict(model, state, name, source=f"The weights {loaded.id!r}")
    if source_classes != num_classes:
        model.reset_classifier(num_classes)
    return model, loaded


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
