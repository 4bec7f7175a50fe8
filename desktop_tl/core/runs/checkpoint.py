"""Checkpoints as single safetensors files: tensors plus JSON metadata, never a pickle."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from desktop_tl.core.atomic import atomic_write
from desktop_tl.core.errors import UserError
from desktop_tl.core.models.weight_files import write_safetensors
from desktop_tl.core.runs.folder import BEST_CHECKPOINT, LAST_CHECKPOINT

LAST, BEST = LAST_CHECKPOINT, BEST_CHECKPOINT
_META_KEY = "desktop_tl"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: model weights, optional optimizer state, and metadata."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    meta: dict[str, Any]


def save_checkpoint(path: Path, model: torch.nn.Module, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write model (and optimizer) state with `meta` atomically to `path`."""
    tensors = {f"model.{k}": v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    meta = dict(meta, format_version=FORMAT_VERSION)
    if optimizer is not None:
        state = optimizer.state_dict()
        for param_id, param_state in state["state"].items():
            for key, value in param_state.items():
                if not torch.is_tensor(value):
                    value = torch.tensor(value)
                tensors[f"optim.{param_id}.{key}"] = value.detach().to("cpu").clone().contiguous()
        meta["optimizer_groups"] = state["param_groups"]
    metadata = {_META_KEY: json.dumps(meta)}
    atomic_write(Path(path), lambda tmp: write_safetensors(tmp, tensors, metadata))


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; UserError when it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No checkpoint {path.name} in the run folder.", "Train the run first, or pick another run folder.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = _meta_object(fh.metadata())
            model: dict[str, torch.Tensor] = {}
            optim_state: dict[int, dict[str, torch.Tensor]] = {}
            for key in fh.keys():
                kind, _, rest = key.partition(".")
                if kind == "model":
                    model[rest] = fh.get_tensor(key)
                elif kind == "optim":
                    param_id, _, name = rest.partition(".")
                    optim_state.setdefault(int(param_id), {})[name] = fh.get_tensor(key)
    except (SafetensorError, KeyError, ValueError, OSError, RecursionError) as exc:
        raise UserError(f"The checkpoint {path.name} is damaged and cannot be read ({exc}).",
                        "Use the other checkpoint of the run (best or last), or train again.") from exc
    optimizer = None
    if "optimizer_groups" in meta:
        optimizer = {"state": optim_state, "param_groups": meta.pop("optimizer_groups")}
    return Checkpoint(model, optimizer, meta)


def read_meta(path: Path) -> dict[str, Any]:
    """Only the metadata of a checkpoint (cheap: no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return _meta_object(fh.metadata())
    except (SafetensorError, KeyError, ValueError, OSError, RecursionError) as exc:
        raise UserError(f"The checkpoint {Path(path).name} is damaged and cannot be read ({exc}).",
                        "Use the other checkpoint of the run, or train again.") from exc


def _meta_object(metadata: dict[str, str] | None) -> dict[str, Any]:
    """desktop_tl's metadata of a checkpoint; ValueError/KeyError when it is absent or not an object."""
    meta = json.loads((metadata or {})[_META_KEY])
    if not isinstance(meta, dict):
        raise ValueError("the checkpoint metadata is not an object")
    return meta
