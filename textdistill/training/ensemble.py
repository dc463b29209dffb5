"""Several teachers, one target: how their outputs are combined (a pure function of their logits).

The combination is done on probabilities at the distillation temperature T, where the soft loss reads
them: p = sum_k w_k softmax(z_k / T). It is returned as logits, so the objective, the per-example soft
weighting and the cached-score files stay the same as with one teacher.
"""

from __future__ import annotations

import torch

COMBINE = ("mean", "weighted", "confidence")


def teacher_mixture_weights(teacher_logits: torch.Tensor, kind: str,
                            weights: list[float] | None = None) -> torch.Tensor:
    """Weight of each teacher for each example. `[K, N, C] -> [K, N]`, each column summing to 1.

    'mean': 1/K. 'weighted': `weights` (one per teacher) normalised. 'confidence': per example,
    proportional to each teacher's top probability max_c softmax(z_k)_c at T = 1 (its own confidence,
    whatever the distillation temperature).
    """
    k, n = teacher_logits.shape[:2]
    if kind == "mean":
        w = torch.ones(k, n)
    elif kind == "weighted":
        if weights is None or len(weights) != k:
            raise ValueError(f"combine 'weighted' needs {k} weights, got {weights}")
        w = torch.tensor(weights, dtype=torch.float32)[:, None].expand(k, n)
    elif kind == "confidence":
        w = torch.softmax(teacher_logits.float(), dim=-1).max(-1).values  # [K, N]
    else:
        raise ValueError(f"unknown teacher combination {kind!r}; use one of {', '.join(COMBINE)}")
    return w / w.sum(0, keepdim=True)


def combine_teacher_logits(teacher_logits: torch.Tensor, kind: str, temperature: float | None,
                           weights: list[float] | None = None) -> torch.Tensor:
    """K teachers' logits to one set of target logits. `[K, N, C] -> [N, C]`, float32.

    With a temperature T: logits z whose softmax(z / T) is the mixture sum_k w_k softmax(z_k / T),
    namely z = T log p + c, with the per-example shift c = sum_k w_k T logsumexp(z_k / T) (softmax
    ignores it; it makes K equal teachers give back exactly their own logits). With `temperature`
    None (the logit-MSE soft loss, which has no temperature): the weighted mean of the logits.
    Weights from `teacher_mixture_weights`.
    """
    z = teacher_logits.float()  # [K, N, C]
    w = teacher_mixture_weights(z, kind, weights)  # [K, N]
    if temperature is None:
        return (w[..., None] * z).sum(0)
    scaled = z / temperature
    log_p = torch.logsumexp(torch.log(w)[..., None] + torch.log_softmax(scaled, dim=-1), dim=0)  # [N, C]
    shift = (w * temperature * torch.logsumexp(scaled, dim=-1)).sum(0)  # [N]
    return temperature * log_p + shift[:, None]
