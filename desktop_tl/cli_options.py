"""The training options of the command line, generated from the settings dataclasses.

Every field of `TrainConfig` and `SplitConfig` that carries `setting(...)` metadata becomes an option with
its help, choices and default; those the automatic recipe decides form the custom-recipe group, and giving
one of them means `--recipe custom`. A new setting is one field in core.config.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

from desktop_tl.core.config import SplitConfig, TrainConfig, parse_budget, setting_info
from desktop_tl.core.errors import UserError


def option_name(name: str, cls: type = TrainConfig) -> str:
    """The command-line option of a settings field, e.g. "--image-size"."""
    return "--" + (setting_info(cls, name).get("flag") or name.replace("_", "-"))


def _batch_size(text: str) -> int:
    """`--batch-size` value: a whole number, or `auto` (stored as 0)."""
    if text.strip().lower() == "auto":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def _budget(text: str) -> float:
    try:
        return parse_budget(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(f"{exc.what} {exc.hint}") from None


_PARSERS: dict[str, Callable[[str], Any]] = {"budget": _budget, "batch_size": _batch_size}
_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "int | None": int}
_METAVARS = {"budget": "quick|balanced|best|DURATION", "batch_size": "N|auto"}


def _shown_default(name: str, default: Any) -> str:
    if name == "budget":
        return "balanced"
    if name == "batch_size":
        return "auto"
    return "the model's own" if default is None else str(default)


def add_setting_options(parser: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    """One option per settings field of `cls` (defaults are None: what is not given keeps the dataclass's)."""
    custom = None
    for f in fields(cls):
        meta = f.metadata
        if not meta.get("cli", False):
            continue
        target = parser
        if meta.get("recipe_decides"):
            custom = custom or parser.add_argument_group("custom recipe (giving one of these means --recipe custom)")
            target = custom
        flag = option_name(f.name, cls)
        default = f.default if f.default is not MISSING else None
        help_text = f"{meta['help']} (default {_shown_default(f.name, default)})"
        if f.type == "bool":
            if default:
                target.add_argument("--no-" + flag[2:], dest=f.name, action="store_const", const=False,
                                    help=f"switch off: {meta['help']}")
            else:
                target.add_argument(flag, dest=f.name, action="store_const", const=True, help=meta["help"])
            continue
        metavar = None if meta.get("choices") else _METAVARS.get(f.name, flag[2:].upper())
        target.add_argument(flag, dest=f.name, type=_PARSERS.get(f.name, _TYPES[str(f.type)]),
                            choices=meta.get("choices"), metavar=metavar, help=help_text)


def given_settings(args: argparse.Namespace, cls: type = TrainConfig) -> dict[str, Any]:
    """The settings of `cls` given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(cls)
            if f.metadata.get("cli") and getattr(args, f.name, None) is not None}


def choose_recipe(given: dict[str, Any]) -> str:
    """The recipe for these settings: the one asked for; else "custom" when a setting the automatic recipe
    decides was given (said on the terminal), else "auto". UserError for --recipe auto with such settings."""
    decided = [name for name in given if setting_info(TrainConfig, name).get("recipe_decides")]
    flags = ", ".join(option_name(name) for name in decided)
    if given.get("recipe") == "auto" and decided:
        raise UserError(f"{flags} cannot be combined with --recipe auto: the automatic recipe chooses them.",
                        "Leave them out, or add --recipe custom to set them yourself.")
    if "recipe" in given:
        return given["recipe"]
    if decided:
        print(f"Note: training with the custom recipe, because {flags} was given (the automatic recipe would "
              "choose it).")
        return "custom"
    return "auto"


def split_config(args: argparse.Namespace) -> SplitConfig:
    """The split settings given (the dataclass's defaults for the others)."""
    return SplitConfig(**given_settings(args, SplitConfig))


def describe_setting_error(setting: str, what: str) -> str:
    """A settings error with the option that sets it, e.g. "... (option --image-size)"."""
    for cls in (TrainConfig, SplitConfig):
        if setting in {f.name for f in fields(cls)}:
            return f"{what} (option {option_name(setting, cls)})"
    return what
