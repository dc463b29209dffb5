"""Which floating-point precision to compute in: bfloat16 where the hardware does it natively.

On CPUs with AVX512-BF16 or AMX, oneDNN runs bfloat16 matmuls faster than float32 (the teacher's forward
gains more than a small student's training step, whose small matmuls weigh less; docs/measurements.md has
the numbers), and autocast keeps weights, gradients and optimizer state in float32. Without native
support, bfloat16 is emulated and slower, so 'auto' falls back to float32 there.
"""

from __future__ import annotations

import contextlib

import torch


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True when `device` computes bfloat16 matmuls natively (not emulated)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    # private torch helpers (present since torch 2.1); a torch without them just gets float32
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(setting: str, device: torch.device | str | None = None) -> str:
    """`train.mixed_precision` made concrete: 'auto' becomes 'bf16' or 'no' for this machine."""
    if setting != "auto":
        return setting
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16" if native_bf16(device) else "no"


def autocast(precision: str, device: torch.device | str):
    """An autocast context for inference in `precision` ('no' gives a no-op context)."""
    device = torch.device(device)
    if precision == "no":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def set_dropout(model: torch.nn.Module, p: float | None) -> None:
    """Set every dropout layer's probability to `p` (None leaves the model as configured)."""
    if p is None:
        return
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
