"""Training objectives: which losses are summed, with which weights, on which teacher signal.

An objective is a function `(model, batch, progress) -> {term name: summed loss}` that runs the forward
pass itself; `progress` in [0, 1] drives the schedules. Every task's objective is built from the pieces
here, so a loss, a weight schedule or a new term serves every task at once:

    ce   = alpha * sum CE(student, y)                     over labelled examples, or reference tokens
    soft = beta * T^2 * sum w * D(student_T, teacher_T)   D = LOSSES[loss.soft] (no T^2 for 'mse')

The teacher signal may come from a frozen teacher (cached, or live) or from models trained in the same loop
(`training/online.py`): the terms are the same functions either way.

alpha, beta and T follow `loss.schedule`. Classification sums over examples
(`training/example_objectives.py`), generation over target tokens (`training/token_objectives.py`); the
loop divides by the units of the whole optimizer step.
"""

from __future__ import annotations

import torch

from textdistill.config import LossConfig
from textdistill.losses import IGNORE_INDEX, LOSSES, chunked, cross_entropy, masked_sum
from textdistill.models.inputs import Batch, logits_of
from textdistill.models.quantisation import set_fake_quant
from textdistill.training.schedules import scheduled


def loss_weights(cfg: LossConfig, progress: float) -> tuple[float, float, float]:
    """(alpha, beta, temperature) at `progress`, by `cfg.schedule`."""
    return (scheduled(cfg.alpha, cfg.alpha_end, cfg.schedule, progress),
            scheduled(cfg.beta, cfg.beta_end, cfg.schedule, progress),
            scheduled(cfg.temperature, cfg.temperature_end, cfg.schedule, progress))


def soft_scale(cfg: LossConfig, temperature: float) -> float:
    """T^2 (Hinton et al. 2015: the soft term's gradients shrink as 1/T^2); 1 for the logit MSE, which has no T."""
    return 1.0 if cfg.soft == "mse" else temperature**2


def soft_options(cfg: LossConfig, labels: torch.Tensor | None = None) -> dict:
    """The options of `LOSSES[cfg.soft]` beyond the temperature, from the config (and the positions' labels,
    which only 'dkd' reads: its target class)."""
    return {
        "jsd": {"beta": cfg.jsd_beta},
        "skew_kl": {"alpha": cfg.skew_alpha},
        "skew_reverse_kl": {"alpha": cfg.skew_alpha},
        "dkd": {"alpha": cfg.dkd_alpha, "beta": cfg.dkd_beta, "labels": labels},
        "adaptive_kl": {"beta": cfg.adaptive_beta, "gamma": cfg.adaptive_gamma},
    }.get(cfg.soft, {})


def soft_loss(cfg: LossConfig, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
              chunk_size: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
    """`LOSSES[cfg.soft]` per position, `[N, V], [N, V] (, labels [N]) -> [N]`, `chunk_size` positions at a time
    when set. `labels` (IGNORE_INDEX where there is none) are read by 'dkd' only."""
    loss_fn = LOSSES[cfg.soft]
    kwargs = {"temperature": temperature, **soft_options(cfg, labels)}
    if chunk_size:
        return chunked(loss_fn, student_logits, teacher_logits, chunk_size, **kwargs)
    return loss_fn(student_logits, teacher_logits, **kwargs)


def label_objective():
    """Cross-entropy on the targets only (gold labels, or reference tokens): fine-tuning or training a teacher,
    and the no-teacher baseline of every task."""

    def objective(model: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        logits = logits_of(model, batch)  # [B, C] or [B, T, V]
        targets = batch["targets"]  # [B] or [B, T]
        return {"ce": masked_sum(cross_entropy(logits, targets), targets != IGNORE_INDEX)}

    return objective


def quantisation_aware(objective, start: float):
    """Quantisation-aware training of the same objective: the student's fake quantisation
    (`models.quantisation.fake_quantise`, put in place around the loop) is off for the first `start` share of
    the steps and on after, so the student first learns in float, then adapts to its int8 export."""

    def wrapped(model: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        set_fake_quant(model, progress >= start)
        return objective(model, batch, progress)

    return wrapped


def fake_quant_evaluation(evaluate):
    """`evaluate` of a fake-quantised student with its fake quantisation on, whatever the training step left:
    validation scores (and the best checkpoint) are those of the int8 model that will be served."""

    def wrapped(model: torch.nn.Module) -> dict:
        set_fake_quant(model, True)
        return evaluate(model)

    return wrapped
