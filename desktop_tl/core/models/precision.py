"""Mixed precision in one idiom: autocast to a run's reduced precision, or full precision throughout."""

from __future__ import annotations

import torch


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> torch.autocast:
    """Autocast on `device` to `amp_dtype`; disabled (float32 throughout) when it is None."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
