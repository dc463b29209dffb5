"""Which floating-point precision to compute in: bfloat16 where the hardware does it natively and faster.

On CPUs with AVX512-BF16 or AMX, oneDNN can run bfloat16 matmuls faster than float32 (the teacher's forward
gains more than a small student's training step, whose small matmuls weigh less; docs/measurements.md has
the numbers), and autocast keeps weights, gradients and optimizer state in float32. But the flag is not the
speed: one CPU that reports AVX512-BF16 ran bfloat16 matmuls at 4.2x float32's throughput, another at 0.5x.
So on a CPU 'auto' times one bfloat16 and one float32 matmul (once per process, milliseconds) and takes
bfloat16 only where it is clearly faster. Without native support bfloat16 is emulated and slower, so 'auto'
falls back to float32 there without timing anything.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time

import torch

log = logging.getLogger("textdistill")

# 'auto' takes bfloat16 on a CPU only when its matmul takes at most this share of float32's time
BF16_MAX_TIME_SHARE = 0.8


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True when `device` computes bfloat16 matmuls natively (not emulated) and, on a CPU, measurably faster
    than float32 (`bf16_faster_on_cpu`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    # private torch helpers (present since torch 2.1); a torch without them just gets float32
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks) and bf16_faster_on_cpu()


@functools.cache
def bf16_faster_on_cpu() -> bool:
    """Whether a bfloat16 matmul takes at most BF16_MAX_TIME_SHARE of a float32 one's time on this CPU,
    timed once per process; logged."""
    fp32, bf16 = _matmul_seconds(torch.float32), _matmul_seconds(torch.bfloat16)
    faster = bf16 <= BF16_MAX_TIME_SHARE * fp32
    log.info("precision: a bfloat16 matmul runs at %.2fx float32's speed on this CPU, so 'auto' computes in %s",
             fp32 / max(bf16, 1e-9), "bfloat16" if faster else "float32")
    return faster


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
