"""Pretrained timm models in the local Hugging Face hub cache, found by scanning its folders (no network)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import timm

from desktop_tl.core.errors import UserError

log = logging.getLogger(__name__)


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
