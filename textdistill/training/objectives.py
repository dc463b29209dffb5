"""Training objectives: which losses are summed, with which weights, on which teacher signal."""

from __future__ import annotations

import torch

from textdistill.config import LossConfig
from textdistill.losses import IGNORE_INDEX, SOFT_LOSSES, cross_entropy, masked_sum
from textdistill.training.loop import Batch, model_inputs


def classification_objective(cfg: LossConfig):
    """loss = alpha * CE(student, y) + beta * T^2 * KL(teacher_T || student_T)   (Hinton et al. 2015).

    With `cfg.soft == 'mse'` the soft term is the logit MSE, which has no temperature and no T^2.
    CE counts only labelled examples; the soft term counts every example that has teacher logits
    (unlabelled text included). Returns per-term sums; the loop divides by the step's example count.
    """
    soft_loss = SOFT_LOSSES[cfg.soft]
    scale = cfg.temperature**2 if cfg.soft == "kl" else 1.0

    def objective(student: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        student_logits = student(**model_inputs(batch)).logits  # [B, C]
        labels = batch["labels"]  # [B], IGNORE_INDEX where unlabelled
        terms = {}
        if cfg.alpha > 0:
            terms["ce"] = cfg.alpha * masked_sum(cross_entropy(student_logits, labels), labels != IGNORE_INDEX)
        if cfg.beta > 0:
            teacher_logits = batch["teacher_logits"]  # [B, C]
            soft = soft_loss(student_logits, teacher_logits, cfg.temperature)  # [B]
            terms["soft"] = cfg.beta * scale * soft.sum()
        return terms

    return objective


def label_objective():
    """Plain cross-entropy on gold labels: fine-tuning a teacher, or the no-teacher baseline."""

    def objective(model: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        logits = model(**model_inputs(batch)).logits  # [B, C]
        labels = batch["labels"]
        return {"ce": masked_sum(cross_entropy(logits, labels), labels != IGNORE_INDEX)}

    return objective
