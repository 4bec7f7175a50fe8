"""Weights files: read safely (safetensors, or torch.load with weights_only; never an arbitrary pickle),
written as safetensors, and fitted into a model of an architecture, with a clear message and the likely
architecture when they do not fit."""

from __future__ import annotations

import errno
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from desktop_tl.core.errors import UserError
from desktop_tl.core.models import lite
from desktop_tl.core.models.shortlist import SHORTLIST
from desktop_tl.core.models.structure import classifier_prefixes, state_shapes

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
WEIGHTS_SUFFIXES = SAFETENSORS_SUFFIXES + TORCH_SUFFIXES

# Checkpoint wrappers unwrapped by load_weights_file, EMA weights first (as timm does).
_WRAPPER_KEYS = ("state_dict_ema", "state_dict", "model")
# Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
_KEY_PREFIXES = ("module.", "_orig_mod.")
# Buffers that older checkpoints lack; PyTorch keeps the model's own value.
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)


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


def _is_head_key(key: str, heads: tuple[str, ...]) -> bool:
    return any(key.startswith(head + ".") for head in heads)


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
            key = key.removeprefix(prefix)
        state[key] = value
    if not state:
        keys = ", ".join(map(str, list(obj)[:5]))
        raise UserError(f"{name} contains no tensors (top-level keys: {keys or 'none'}).",
                        "Save the weights with torch.save(model.state_dict(), ...).")
    return state


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, with its I/O failures raised as OSError.

    safetensors reports a full disk or a read-only folder as SafetensorError; as OSError,
    `atomic_write` turns it into a UserError instead of letting it crash the caller.
    """
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as exc:
        raise OSError(_io_errno(str(exc)), f"could not write the file ({exc})") from exc


def _io_errno(message: str) -> int:
    match = re.search(r"os error (\d+)", message)
    return int(match.group(1)) if match else errno.EIO


def fit_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], arch: str, *,
                   source: str = "These weights") -> None:
    """Load `state` into `model` (an instance of timm's `arch`), in place.

    Original EfficientNet-Lite names are translated to timm's. A classification head of
    another size is dropped, so the model keeps its own freshly initialised head; anything
    else that does not fit raises WeightsMismatch, suggesting the likely architecture.
    """
    state = to_timm_names(state, arch)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = check_fit(expected, state, arch, classifier_prefixes(model), source)
    model.load_state_dict(state, strict=False)


def to_timm_names(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """`state` with original EfficientNet-Lite names translated to timm's; other dicts unchanged."""
    if arch in lite.LITE_PACKAGES and "_conv_stem.weight" in state:
        return lite.convert_lite_state_dict(state, arch)
    return state


def check_fit(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], arch: str,
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
    signature = {(k, tuple(v.shape)) for k, v in state.items()}
    best, best_score = None, 0.5
    for candidate in dict.fromkeys((*SHORTLIST, *lite.installed())):
        if candidate == exclude:
            continue
        reference = set(state_shapes(candidate).items())
        score = len(signature & reference) / len(signature | reference)
        if score >= best_score:
            best, best_score = candidate, score
    return best
