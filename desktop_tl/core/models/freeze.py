"""Which parts of a model train: module tree, presets, BatchNorm handling, layer-wise LR decay."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from desktop_tl.core.errors import UserError

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


@dataclass
class ModuleNode:
    """One module of the model tree, as a view shows it."""

    name: str                     # qualified name ("" for the root)
    type_name: str
    params: int                   # parameters in this module and below
    trainable: int                # of which trainable
    children: list[ModuleNode] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        """Last part of the qualified name."""
        return self.name.rsplit(".", 1)[-1] if self.name else "model"


def module_tree(model: nn.Module) -> ModuleNode:
    """The nested module tree with parameter counts and how many of them train."""

    def build(name: str, module: nn.Module) -> ModuleNode:
        children = [build(f"{name}.{child}" if name else child, sub) for child, sub in module.named_children()]
        own = list(module.parameters(recurse=False))
        params = sum(p.numel() for p in own) + sum(c.params for c in children)
        trainable = sum(p.numel() for p in own if p.requires_grad) + sum(c.trainable for c in children)
        return ModuleNode(name, type(module).__name__, params, trainable, children)

    return build("", model)


def classifier_name(model: nn.Module) -> str:
    """Qualified name of the model's classifier module (timm's `get_classifier`)."""
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return name
    raise UserError("Could not find the classifier of this model.", "Choose another architecture.")


def parameter_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped stem → stages → head, from timm's coarse `group_matcher`.

    The last group always holds the classifier.
    """
    from timm.models import group_parameters

    head = classifier_name(model)
    groups = group_parameters(model, model.group_matcher(coarse=True))
    ordered = [groups[k] for k in sorted(groups)]
    head_params = [n for n, _ in model.named_parameters() if _under(n, head)]
    body = [[n for n in g if n not in head_params] for g in ordered]
    return [g for g in body if g] + [head_params]


def trainable_names(model: nn.Module, spec: str) -> set[str]:
    """Parameter names that train under `spec`.

    `head`: classifier only. `all`: everything. `last:N`: the last N stages plus the head.
    `modules:a,b`: those modules (and below) plus the head.
    """
    spec = spec.strip()
    all_names = {n for n, _ in model.named_parameters()}
    head = classifier_name(model)
    head_names = {n for n in all_names if _under(n, head)}
    if spec == "all":
        return all_names
    if spec == "head":
        return head_names
    if spec.startswith("last:"):
        try:
            count = int(spec[5:])
        except ValueError:
            count = -1
        if count < 0:
            raise UserError(f"Freeze preset {spec!r} needs a whole number of blocks.", "Use last:2, for example.")
        body = parameter_groups(model)[:-1]
        chosen = body[len(body) - count:] if count else []
        return head_names | {n for g in chosen for n in g}
    if spec.startswith("modules:"):
        modules = [m.strip() for m in spec[8:].split(",") if m.strip()]
        known = {n for n, _ in model.named_modules()}
        unknown = [m for m in modules if m not in known]
        if unknown:
            raise UserError(f"The model has no module named {', '.join(unknown[:3])}.",
                            "Pick module names from the layer tree, e.g. blocks.6.")
        return head_names | {n for n in all_names if any(_under(n, m) for m in modules)}
    raise UserError(f"Unknown freeze setting {spec!r}.", "Use head, all, last:N or modules:NAME,NAME.")


def apply_freeze(model: nn.Module, spec: str) -> tuple[int, int]:
    """Set `requires_grad` by `spec`; returns (trainable, total) parameter counts."""
    keep = trainable_names(model, spec)
    for name, param in model.named_parameters():
        param.requires_grad_(name in keep)
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def spec_from_trainable_modules(model: nn.Module, modules: list[str]) -> str:
    """The freeze spec for an explicit set of trainable modules, preferring a named preset."""
    chosen = {n for n, _ in model.named_parameters() if any(_under(n, m) for m in modules)}
    chosen |= trainable_names(model, "head")
    for preset in ["head", "all"] + [f"last:{k}" for k in range(1, len(parameter_groups(model)))]:
        if trainable_names(model, preset) == chosen:
            return preset
    return "modules:" + ",".join(sorted(modules))


def freeze_batchnorm_stats(model: nn.Module) -> None:
    """Put BatchNorm layers with no trainable parameter in eval mode (call after `model.train()`).

    Their running mean and variance then stay exactly as pretrained.
    """
    for module in model.modules():
        if isinstance(module, _BN_TYPES) and not any(p.requires_grad for p in module.parameters()):
            module.eval()


def optimizer_param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW parameter groups: no weight decay on norms and biases, optional layer-wise LR decay.

    With `layer_decay` < 1 the head keeps the full learning rate and each earlier group gets
    `layer_decay` times the one after it. Each group carries its `lr_scale`.
    """
    groups = parameter_groups(model)
    depth = {name: i for i, names in enumerate(groups) for name in names}
    last = len(groups) - 1
    buckets: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias")
        level = depth.get(name, last) if layer_decay < 1 else last
        buckets.setdefault((level, no_decay), []).append(param)
    return [
        {"params": params, "weight_decay": 0.0 if no_decay else weight_decay,
         "lr_scale": layer_decay ** (last - level)}
        for (level, no_decay), params in sorted(buckets.items(), key=lambda kv: kv[0])
    ]


def _under(param_or_module: str, module: str) -> bool:
    return param_or_module == module or param_or_module.startswith(module + ".")
