"""Which floating-point precision to compute in: bfloat16 where the hardware does it natively.

On CPUs with AVX512-BF16 or AMX, oneDNN can run bfloat16 matmuls faster than float32 (the teacher's forward
gains more than a small student's training step, whose small matmuls weigh less; docs/measurements.md has
the numbers), and autocast keeps weights, gradients and optimizer state in float32. Without native
support, bfloat16 is emulated and slower, so 'auto' falls back to float32 there.

The flag is not the speed: one CPU that reports AVX512-BF16 ran bfloat16 matmuls at 4.2x float32's
throughput, another at 0.5x. Where 'auto' picks bfloat16 on a CPU, one matmul is timed in each precision
(once per process, milliseconds) and a slow bfloat16 is logged with the setting that avoids it. 'auto'
itself still follows the flag: on Rotten Tomatoes, float32 on such a CPU trained twice as fast but its
students scored lower (docs/measurements.md, 2026-12-07), so the choice is the user's.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time

import torch

log = logging.getLogger("textdistill")


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


@functools.cache
def bf16_speed_on_cpu() -> float:
    """A bfloat16 matmul's speed as a multiple of float32's on this CPU, timed once per process; logged with
    a hint where bfloat16 is the slower one."""
    ratio = _matmul_seconds(torch.float32) / max(_matmul_seconds(torch.bfloat16), 1e-9)
    if ratio < 1:
        log.info("precision: 'auto' computes in bfloat16 (this CPU reports it natively), but a bfloat16 matmul "
                 "runs at %.2fx float32's speed here; train.mixed_precision: no trains faster on this CPU "
                 "(measured to change accuracy too: docs/measurements.md)", ratio)
    return ratio


def _matmul_seconds(dtype: torch.dtype, rounds: int = 5) -> float:
    """The fastest of `rounds` [256, 1024] x [1024, 1024] products in `dtype`, after one unmeasured."""
    a, b = torch.randn(256, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    best = float("inf")
    for i in range(rounds + 1):
        start = time.perf_counter()
        a @ b
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def resolve_precision(setting: str, device: torch.device | str | None = None) -> str:
    """`train.mixed_precision` made concrete: 'auto' becomes 'bf16' or 'no' for this machine."""
    if setting != "auto":
        return setting
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not native_bf16(device):
        return "no"
    if torch.device(device).type == "cpu":
        bf16_speed_on_cpu()  # a hint where the flag promises more than the CPU gives
    return "bf16"


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
