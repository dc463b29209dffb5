"""Schedules over training progress and per-example weights from the teacher's confidence.

Pure functions: `progress` is the share of training done, in [0, 1], as the loop passes it to objectives.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "linear", "cosine")


def scheduled(start: float, end: float | None, kind: str, progress: float) -> float:
    """The value at `progress`: `start` at 0, `end` at 1 (constant, or `end` empty, stays at `start`).

    'linear' interpolates; 'cosine' follows start + (end - start) * (1 - cos(pi * progress)) / 2.
    """
    if kind == "constant" or end is None:
        return start
    p = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        share = p
    elif kind == "cosine":
        share = (1.0 - math.cos(math.pi * p)) / 2.0
    else:
        raise ValueError(f"unknown schedule {kind!r}; use one of {', '.join(SCHEDULES)}")
    return start + (end - start) * share


def teacher_weights(teacher_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example soft-term weight from the teacher's distribution. `[B, C] -> [B]`, in [0, 1], no gradient.

    'none' gives 1; 'confidence' the top probability max_c p_c; 'entropy' 1 - H(p) / log C.
    """
    if kind == "none":
        return torch.ones(teacher_logits.shape[:-1], device=teacher_logits.device)
    log_p = torch.log_softmax(teacher_logits.detach().float(), dim=-1)
    if kind == "confidence":
        return log_p.exp().max(-1).values
    if kind == "entropy":
        n_classes = teacher_logits.shape[-1]
        if n_classes < 2:
            return torch.ones(teacher_logits.shape[:-1], device=teacher_logits.device)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return (1.0 - entropy / math.log(n_classes)).clamp(0.0, 1.0)
    raise ValueError(f"unknown soft weighting {kind!r}; use 'none', 'confidence' or 'entropy'")
