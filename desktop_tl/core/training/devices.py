"""Which device trains, what it is called, and how many CPU threads the window trains with."""

from __future__ import annotations

import functools

import torch

from desktop_tl.core.errors import UserError


def pick_device(requested: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an unavailable explicit choice is a UserError."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("The CUDA device was asked for, but no CUDA GPU is available.", "Choose auto or cpu.")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("Apple's MPS device was asked for, but it is not available.", "Choose auto or cpu.")
    return torch.device(requested)


def device_label(device: torch.device) -> str:
    """Human-readable device name, with the GPU model where there is one."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def amp_dtype_for(device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA (bfloat16 where supported), none elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@functools.cache
def _torch_default_threads() -> int:
    return torch.get_num_threads()   # one per physical core; read before any run changes it


def compute_threads() -> int:
    """CPU threads for training in the window: torch's default, as `desktop-tl train` uses, so training in
    the window is as fast as headless. The window stays responsive without a spare core (training runs on
    the worker thread; curves redraw at 15 Hz); only from 8 cores up is one left free, costing at most an
    eighth. (Reserving one of 2 cores cost 35% of the speed and bought no responsiveness:
    benchmarks/bench_gui_train.py.)"""
    default = _torch_default_threads()
    return default - 1 if default >= 8 else default


def detect_devices() -> list[tuple[str, str]]:
    """(device setting, label) pairs; `auto` shows what it resolves to, e.g. "auto (CPU)"."""
    auto = pick_device("auto")
    names = {"cpu": "CPU", "mps": "Apple GPU (MPS)"}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    options = [("auto", f"auto ({f'CUDA: {gpu}' if auto.type == 'cuda' else names.get(auto.type, auto.type)})"),
               ("cpu", "cpu")]
    if gpu:
        options.append(("cuda", f"cuda ({gpu})"))
    if auto.type == "mps":
        options.append(("mps", "mps (Apple GPU)"))
    return options
