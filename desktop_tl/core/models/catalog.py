"""The model catalog: which timm architectures the app offers and which offline weights each has.

Weights options, best first: "bundled" (shipped with the app), "hf:<repo_id>" (the local
Hugging Face cache), "imported:<id>" (files imported into the model store), "none" (random
initialisation). Nothing here downloads.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import timm

from desktop_tl.core.models.bundled import bundled_architectures
from desktop_tl.core.models.hf_cache import hf_cached_by_arch
from desktop_tl.core.models.shortlist import DESCRIPTIONS, SHORTLIST
from desktop_tl.core.models.store import StoredWeights, list_imported
from desktop_tl.core.models.structure import all_names, input_size, param_count, require_known

# include_all searches matching more names than this list params=None for non-shortlisted
# entries, so that searching all ~1,400 timm architectures stays instant.
PARAMS_SEARCH_LIMIT = 40


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
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
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
        params = param_count(name) if with_params or name in SHORTLIST else None
        entries.append(ModelEntry(
            name=name,
            params=params,
            input_size=input_size(name),
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
        names = sorted(all_names())
    else:
        bundled, cached, imported = sources
        extra = (bundled | set(cached) | set(imported)) & all_names()
        names = [*SHORTLIST, *sorted(extra - set(SHORTLIST))]
    names = [n for n in names if _matches(n, query)]
    return _entries(names, not include_all or len(names) <= PARAMS_SEARCH_LIMIT, sources)


def describe_model(name: str) -> ModelEntry:
    """The catalog entry for one architecture (any timm name); UserError suggesting close names if unknown."""
    require_known(name)
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
