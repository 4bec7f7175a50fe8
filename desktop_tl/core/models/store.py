"""The app's model store: weights files the user imported, checked against their architecture and
re-saved as safetensors under the data folder, listed in manifest.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import timm

from desktop_tl.core.atomic import atomic_write, atomic_write_json
from desktop_tl.core.errors import UserError
from desktop_tl.core.hashing import file_sha256
from desktop_tl.core.models.structure import classifier_prefixes, state_shapes
from desktop_tl.core.models.weight_files import check_fit, load_weights_file, to_timm_names, write_safetensors
from desktop_tl.core.paths import user_data_dir

_MANIFEST_VERSION = 1


@dataclass(frozen=True)
class StoredWeights:
    """A weights file imported into the app's model store (re-saved as safetensors)."""

    id: str  # sha256[:16] of the original file; the weights option is f"imported:{id}"
    arch: str
    original_name: str
    sha256: str
    path: Path
    imported_at: str  # ISO 8601, UTC


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
    check_fit(state_shapes(arch), state, arch, classifier_prefixes(arch), source=f"The weights in {path.name}")
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
             "imported_at": datetime.now(UTC).isoformat(timespec="seconds")}
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


def find_imported(arch: str, weights_id: str) -> StoredWeights | None:
    """The store's entry `weights_id` (the ID of the option "imported:ID") for `arch`, or None."""
    return next((s for s in list_imported(arch) if s.id == weights_id), None)
