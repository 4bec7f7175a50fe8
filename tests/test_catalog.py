"""The model catalog: listing, describing and building models with offline weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from skimage import data as skdata

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.bundled import load_bundled_lite0
from desktop_tl.core.models.catalog import describe_model, format_models_table, list_models
from desktop_tl.core.models.factory import LoadedWeights, create_model
from desktop_tl.core.models.shortlist import SHORTLIST
from desktop_tl.core.models.structure import data_config


def _predict(model: torch.nn.Module, image: np.ndarray) -> int:
    transform = timm.data.create_transform(**data_config(model))
    with torch.no_grad():
        return int(model(transform(Image.fromarray(image)).unsqueeze(0)).argmax())


def test_bundled_lite0_weights_and_preprocessing_classify_imagenet_images():
    model, loaded = create_model("efficientnet_lite0", "bundled", num_classes=1000)
    model.eval()
    assert loaded == LoadedWeights("bundled", "bundled", loaded.description, True)
    cfg = data_config(model)
    assert cfg["input_size"] == [3, 224, 224]
    assert cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == pytest.approx(0.875)
    assert _predict(model, skdata.chelsea()) in {281, 282, 285}  # tabby, tiger cat, Egyptian cat
    assert _predict(model, skdata.coffee()) == 967  # espresso


def test_new_head_keeps_backbone_weights_identical():
    model, _ = create_model("efficientnet_lite0", "bundled", num_classes=3)
    reference = load_bundled_lite0()
    state = model.state_dict()
    assert state["classifier.weight"].shape == (3, 1280)
    backbone = [k for k in reference if not k.startswith("classifier.")]
    assert len(backbone) == 294
    for key in backbone:
        assert torch.equal(state[key], reference[key]), key


def test_none_weights_give_random_initialisation():
    model, loaded = create_model("mobilenetv3_small_100", "none", num_classes=4)
    assert loaded.id == "none" and loaded.source == "none" and not loaded.pretrained
    assert "not pretrained" in loaded.description
    assert model.get_classifier().out_features == 4


def test_unavailable_weights_option_says_which_exist():
    with pytest.raises(UserError) as info:
        create_model("resnet50", "bundled", num_classes=3)
    assert "bundled" in info.value.what and "'none'" in info.value.hint
    with pytest.raises(UserError, match="Unknown weights option"):
        create_model("resnet18", "imagenet-please", num_classes=3)
    with pytest.raises(UserError, match="Hugging Face cache"):
        create_model("resnet18", "hf", num_classes=3)


def test_default_list_is_the_shortlist_with_sizes_and_weights():
    listed = list_models()
    entries = listed[:len(SHORTLIST)]
    assert [e.name for e in entries] == list(SHORTLIST)
    extras = listed[len(SHORTLIST):]           # architectures with weights on this machine (a weights package...)
    assert all(not e.shortlisted and e.best_weights.pretrained for e in extras), [e.name for e in extras]
    for entry in entries:
        assert entry.shortlisted and entry.params and entry.params > 1_000_000
        assert entry.input_size[0] == 3 and entry.input_size[1] >= 160
        assert entry.description and entry.weights[-1].id == "none"
    lite0 = entries[0]
    assert lite0.best_weights.id == "bundled" and lite0.best_weights.pretrained
    assert lite0.best_weights.label == "ImageNet-1k (bundled with the app)"
    assert 4_000_000 < lite0.params < 5_500_000
    resnet50 = next(e for e in entries if e.name == "resnet50")
    assert [w.id for w in resnet50.weights] == ["none"] and not resnet50.best_weights.pretrained
    assert [e.name for e in list_models("resnet")] == ["resnet18", "resnet34", "resnet50"]


def test_search_all_timm_architectures():
    many = list_models("resnet", include_all=True)
    assert len(many) > 40
    assert {"resnet18", "resnet101", "cspresnet50"} <= {e.name for e in many}
    by_name = {e.name: e for e in many}
    assert by_name["resnet18"].shortlisted and by_name["resnet18"].params
    assert by_name["resnet101"].params is None and not by_name["resnet101"].shortlisted
    few = list_models("efficientnet_lite*", include_all=True)
    assert [e.name for e in few] == [f"efficientnet_lite{n}" for n in range(5)]
    assert all(e.params for e in few)
    assert few[1].input_size == (3, 240, 240)


def test_describe_model_and_unknown_names():
    entry = describe_model("resnet101")
    assert entry.params and entry.params > 40_000_000 and not entry.shortlisted
    assert entry.weights[-1].id == "none"
    with pytest.raises(UserError) as info:
        describe_model("resnet51x")
    assert "Unknown model" in info.value.what and "resnet50" in info.value.hint
    with pytest.raises(UserError) as info:
        describe_model("resnet18.a1_in1k")
    assert "'resnet18'" in info.value.hint
    with pytest.raises(UserError):
        create_model("not_a_model", "none", num_classes=2)


def test_models_table_is_aligned():
    entries = list_models()
    lines = format_models_table(entries).splitlines()
    assert lines[0].split() == ["MODEL", "PARAMS", "INPUT", "WEIGHTS"]
    assert len(lines) == len(entries) + 1 and len(entries) >= len(SHORTLIST)
    assert len({line.index(line.split()[2]) for line in lines[1:]}) == 1     # the input column aligned
    assert lines[1].startswith("efficientnet_lite0") and lines[1].endswith("bundled, none")
    assert "4.7M" in lines[1] and "224x224" in lines[1]
    assert len({line.index("224x224") for line in lines[1:len(SHORTLIST) + 1]}) == 1
    assert format_models_table([]) == "No models match."


def test_data_config_is_json_safe():
    with torch.device("meta"):
        model = timm.create_model("vit_small_patch16_224")
    cfg = data_config(model)
    assert json.loads(json.dumps(cfg)) == cfg
    assert set(cfg) == {"input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode"}
