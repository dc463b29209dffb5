"""Objectives whose unit is the example: classification (one label, one teacher distribution per text).

Every objective returns per-term sums over the micro-batch's examples; the loop divides by the step's
example count (`loop.count_examples`, unlabelled examples included), so gradient accumulation is exact. The
terms are those of every task (`training/objectives.py`) plus intermediate-layer matching.
"""

from __future__ import annotations

import torch

from textdistill.config import LossConfig
from textdistill.losses import (HIDDEN_LOSSES, IGNORE_INDEX, attention_forward_kl, cross_entropy, hidden_mse,
                                masked_mean_per_example, masked_sum)
from textdistill.models.inputs import Batch, model_inputs
from textdistill.training.heads import ContrastiveTerm, VIDHeads, mean_pool
from textdistill.training.intermediate import LayerMatch, Projections, live_teacher_features, teacher_inputs
from textdistill.training.objectives import loss_weights, soft_loss, soft_scale
from textdistill.training.schedules import teacher_weights


def classification_objective(cfg: LossConfig, teacher: torch.nn.Module | None = None,
                             matches: list[LayerMatch] | None = None, projections: Projections | None = None, *,
                             vid: VIDHeads | None = None, contrastive: ContrastiveTerm | None = None):
    """loss = alpha * CE(student, y) + beta * T^2 * w_teacher * D(teacher_T || student_T)  (Hinton et al. 2015)
    [+ intermediate-layer terms when `teacher` and `matches` are given (through `vid` for hidden_loss 'vid')]
    [+ contrastive_weight * InfoNCE(pooled student, pooled teacher) with `contrastive` (CRD / CoDIR)].

    w_teacher is the per-example weight of `cfg.soft_weighting` (1 by default). CE counts only labelled
    examples; the soft term counts every example that has teacher logits (unlabelled text included); the
    contrastive term every example, against the teacher representations in the batch (`teacher_repr [B, D_t]`,
    served through the cache, with `example_index [B]` for the memory bank).
    Returns per-term sums; the loop divides by the step's example count.
    """
    intermediate = teacher is not None and matches is not None

    def objective(student: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        inputs = model_inputs(batch)
        attentions = intermediate and cfg.attention_weight > 0
        hidden = intermediate or contrastive is not None
        out = student(**inputs, output_hidden_states=hidden, output_attentions=attentions)
        student_logits = out.logits  # [B, C]
        labels = batch["targets"]  # [B], IGNORE_INDEX where unlabelled
        alpha, beta, temperature = loss_weights(cfg, progress)
        terms = {}
        if alpha > 0:
            terms["ce"] = alpha * masked_sum(cross_entropy(student_logits, labels), labels != IGNORE_INDEX)
        if beta > 0:
            teacher_logits = batch["teacher_logits"]  # [B, C]
            soft = soft_loss(cfg, student_logits, teacher_logits, temperature, labels=labels)  # [B]
            weights = teacher_weights(teacher_logits, cfg.soft_weighting)  # [B]
            if "example_weights" in batch:
                weights = weights * batch["example_weights"]  # class balance
            terms["soft"] = beta * soft_scale(cfg, temperature) * (weights * soft).sum()
        if intermediate:
            # the teacher reads its own token ids (`teacher_input_ids` with a pruned student vocabulary)
            teacher_out = live_teacher_features(teacher, teacher_inputs(batch, inputs), attentions)
            terms.update(intermediate_terms(cfg, out, teacher_out, inputs["attention_mask"], matches, projections,
                                            vid))
        if contrastive is not None:
            pooled = mean_pool(out.hidden_states[-1], inputs["attention_mask"])  # [B, D_s]
            info_nce = contrastive(pooled, batch["teacher_repr"], batch["example_index"])  # [B]
            terms["contrastive"] = cfg.contrastive_weight * info_nce.sum()
        return terms

    return objective


def intermediate_terms(cfg: LossConfig, student_out, teacher_out, attention_mask: torch.Tensor,
                       matches: list[LayerMatch], projections: Projections | None,
                       vid: VIDHeads | None = None) -> dict[str, torch.Tensor]:
    """Summed per-example matching losses of hidden states, attentions and embeddings over `matches`; the hidden
    states through `vid`'s heads when given (hidden_loss 'vid'), else projected and compared by `HIDDEN_LOSSES`."""
    project = projections if projections is not None else (lambda name, h: h)
    mask = attention_mask.bool()  # [B, L]
    terms = {}
    if cfg.hidden_loss != "none" and cfg.hidden_weight > 0:
        match = vid if vid is not None else (lambda name, s, t: HIDDEN_LOSSES[cfg.hidden_loss](project(name, s), t))
        total = 0.0
        for m in matches:
            name = f"layer{m.student_layer}_to{m.teacher_layer}"
            # hidden_states[0] is the embedding output, so layer i is entry i + 1
            s = student_out.hidden_states[m.student_layer + 1]  # [B, L, D_s]
            t = teacher_out.hidden_states[m.teacher_layer + 1]  # [B, L, D_t]
            total = total + masked_mean_per_example(match(name, s, t), mask).sum()
        terms["hidden"] = cfg.hidden_weight * total
    if cfg.attention_weight > 0:
        total = 0.0
        for m in matches:
            kl = attention_forward_kl(student_out.attentions[m.student_layer], teacher_out.attentions[m.teacher_layer])
            total = total + masked_mean_per_example(kl, mask).sum()  # [B, Lq] over real query positions
        terms["attention"] = cfg.attention_weight * total
    if cfg.embedding_weight > 0:
        loss = HIDDEN_LOSSES.get(cfg.hidden_loss, hidden_mse)
        s = project("embeddings", student_out.hidden_states[0])
        terms["embedding"] = cfg.embedding_weight * masked_mean_per_example(loss(s, teacher_out.hidden_states[0]), mask).sum()
    return terms
