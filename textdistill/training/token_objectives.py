"""Objectives for generation distillation: one function per way of producing the teacher signal.

Every objective returns per-term **sums over target tokens** (`targets != -100`); the training loop
divides by the step's token count (`count_target_tokens`), so gradient accumulation is exact. The
terms are those of every task (`training/objectives.py`), per token:

    ce   = alpha * sum_t CE(student_t, y_t)
    soft = beta * T^2 * sum_t D(student_t, teacher_t)      D = LOSSES[loss.soft]

Teacher-signal producers:
- `live_teacher_objective`: the teacher's full distribution, computed on the batch at every step
  (word-level KD; on sequence-KD data this is Kim & Rush's word + sequence combination).
- `cached_topk_objective`: the teacher's top-k log-probs + leftover mass, cached on disk beforehand
  (`losses.forward_kl_topk`, a lower bound of the full forward KL), computed from the student's hidden
  states so that its full logits are never held.
- `on_policy_objective`: for a configured share of steps the batch is replaced by the student's own
  samples (no gradient through sampling), scored token by token by the live teacher (GKD).
Sequence-level targets (Kim & Rush 2016) are made by the teacher (`student_samples`) before training;
the no-teacher baseline is `objectives.label_objective`.
"""

from __future__ import annotations

import math

import torch

from textdistill.config import GenerationConfig, LossConfig
from textdistill.losses import (IGNORE_INDEX, cross_entropy, cross_entropy_from_hidden, forward_kl_topk,
                                forward_kl_topk_from_hidden, masked_sum)
from textdistill.models.inputs import Batch, last_hidden, left_padded_prompts, logits_of, model_inputs, prompt_lengths
from textdistill.training.objectives import loss_weights, soft_loss, soft_scale


def count_target_tokens(batch: Batch) -> int:
    """The unit of normalisation for generation: one per predicted token."""
    return int((batch["targets"] != IGNORE_INDEX).sum())


def token_positions(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The target tokens as positions (online training, `training/online.py`): the model's logits there
    `[N, V]` and the tokens `[N]`, N the batch's target tokens in row-major order."""
    mask = batch["targets"] != IGNORE_INDEX  # [B, T]
    return logits_of(model, batch)[mask], batch["targets"][mask]


def token_terms(cfg: LossConfig, progress: float, student_logits: torch.Tensor, targets: torch.Tensor,
                teacher_divergence=None) -> dict[str, torch.Tensor]:
    """The summed `ce` and `soft` terms. `student_logits [B, T, V]`, `targets [B, T]`; `teacher_divergence(T)`
    gives D over the N positions where `targets != -100` (row-major order), `[N]`, or is None for CE only."""
    alpha, beta, temperature = loss_weights(cfg, progress)
    terms = {}
    if alpha > 0:
        terms["ce"] = alpha * masked_sum(cross_entropy(student_logits, targets), targets != IGNORE_INDEX)
    if teacher_divergence is not None and beta > 0:
        terms["soft"] = beta * soft_scale(cfg, temperature) * teacher_divergence(temperature).sum()
    return terms


def reference_objective(cfg: LossConfig):
    """`alpha * CE` on the reference tokens alone: the objective when the soft term's weight is 0 throughout."""

    def objective(student: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        return token_terms(cfg, progress, logits_of(student, batch), batch["targets"])

    return objective


def live_teacher_objective(cfg: LossConfig, teacher: torch.nn.Module, shared: int, chunk_size: int = 0):
    """Token-level KD against the teacher's full distribution, scored on the batch at each step.

    Only the N target positions are compared, `shared` token ids wide (padding rows dropped)."""

    def objective(student: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        student_logits = logits_of(student, batch)  # [B, T, V_s]
        mask = batch["targets"] != IGNORE_INDEX  # [B, T]
        with torch.no_grad():
            teacher_logits = logits_of(teacher, batch)[mask][:, :shared]  # [N, shared]

        def divergence(temperature):
            return soft_loss(cfg, student_logits[mask][:, :shared], teacher_logits, temperature, chunk_size,
                             batch["targets"][mask])  # [N]

        return token_terms(cfg, progress, student_logits, batch["targets"], divergence)

    return objective


def head_factorises(model: torch.nn.Module, batch: Batch) -> bool:
    """Whether `logits == last_hidden @ lm_head.weight.T` for this model, checked on one example in eval
    mode and in float32 (the question is the model's structure, so any autocast is paused): false for a
    wrapped (distributed) model, a head with a bias, logit scaling or soft-capping."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or getattr(head, "bias", None) is not None or not hasattr(model, "base_model"):
        return False
    one = {k: v[:1] for k, v in model_inputs(batch).items()}
    was_training = model.training
    model.eval()
    try:
        device = head.weight.device.type
        with torch.no_grad(), torch.autocast(device, enabled=False):
            logits = logits_of(model, one)
            return torch.allclose(last_hidden(model, one) @ head.weight.T, logits, atol=1e-4, rtol=1e-4)
    finally:
        model.train(was_training)


def cached_topk_objective(cfg: LossConfig, shared: int, vocab_chunk: int = 4096):
    """Token-level forward KL against the cached top-k teacher (`teacher_top_logprobs [B, T, k]`,
    `teacher_top_ids [B, T, k]`, `teacher_leftover [B, T]` in the batch, made at `loss.temperature`):
    KL(p' || q') over k ids + one bucket, never above the full forward KL (docs/guide/generation.md).

    When the student's logits are its last hidden states times its LM head (checked on the first batch),
    both terms are computed from the hidden states (`losses.forward_kl_topk_from_hidden`,
    `losses.cross_entropy_from_hidden`), `vocab_chunk` vocabulary rows at a time: the student's
    `[B, T, V]` logits are never held, so peak memory does not grow with the vocabulary. Otherwise the
    logits are materialised."""
    from_hidden: list[bool] = []

    def objective(student: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        if not from_hidden:
            from_hidden.append(head_factorises(student, batch))
        mask = batch["targets"] != IGNORE_INDEX
        teacher = (batch["teacher_top_logprobs"][mask], batch["teacher_top_ids"][mask].long(),
                   batch["teacher_leftover"][mask])  # [N, k], [N, k], [N]
        if not from_hidden[0]:
            student_logits = logits_of(student, batch)  # [B, T, V_s]
            return token_terms(cfg, progress, student_logits, batch["targets"],
                               lambda t: forward_kl_topk(student_logits[mask][:, :shared], *teacher, t))
        alpha, beta, temperature = loss_weights(cfg, progress)
        hidden = last_hidden(student, batch)[mask]  # [N, D]
        weight = student.get_output_embeddings().weight  # [V_s, D]
        terms = {}
        if alpha > 0:
            terms["ce"] = alpha * cross_entropy_from_hidden(hidden, weight, batch["targets"][mask], vocab_chunk).sum()
        if beta > 0:
            kd = forward_kl_topk_from_hidden(hidden, weight[:shared], *teacher, temperature, vocab_chunk)  # [N]
            terms["soft"] = beta * soft_scale(cfg, temperature) * kd.sum()
        return terms

    return objective


def on_policy_step(step_index: int, fraction: float) -> bool:
    """Whether optimizer step `step_index` (0-based) is on-policy: exactly floor(n * fraction) of the first
    n steps are, spread evenly, and the choice depends on the step alone (so a resumed run repeats it)."""
    return math.floor((step_index + 1) * fraction) > math.floor(step_index * fraction)


def on_policy_objective(cfg: LossConfig, generation: GenerationConfig, teacher: torch.nn.Module, shared: int,
                        off_policy, total_steps: int, task: str, pad_id: int, eos_id: int | None):
    """GKD (Agarwal et al. 2024, https://arxiv.org/abs/2306.13649): on a `generation.on_policy_fraction` share
    of steps, the student samples responses to the batch's prompts (no gradient), the live teacher scores
    them, and the loss is beta * T^2 * D(student, teacher) on the sampled tokens (no CE: a sample has no
    reference). Other steps run `off_policy`.

    The loop normalises by the batch's reference token count; a sampled batch has its own count, so its sum
    is rescaled to (mean over sampled tokens) x (reference tokens): each micro-batch keeps its weight.
    """
    def objective(student: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        if not on_policy_step(round(progress * total_steps), generation.on_policy_fraction):
            return off_policy(student, batch, progress)
        sampled = student_samples(student, batch, generation, task, pad_id, eos_id)
        student_logits = logits_of(student, sampled)
        mask = sampled["targets"] != IGNORE_INDEX
        with torch.no_grad():
            teacher_logits = logits_of(teacher, sampled)[mask][:, :shared]
        _, beta, temperature = loss_weights(cfg, progress)
        kd = soft_loss(cfg, student_logits[mask][:, :shared], teacher_logits, temperature, generation.chunk_size,
                       sampled["targets"][mask])  # [N]
        scale = (batch["targets"] != IGNORE_INDEX).sum() / mask.sum().clamp(min=1)
        return {"soft_on_policy": beta * soft_scale(cfg, temperature) * kd.sum() * scale}

    return objective


@torch.no_grad()
def student_samples(model: torch.nn.Module, batch: Batch, cfg: GenerationConfig, task: str, pad_id: int,
                    eos_id: int | None, do_sample: bool = True, num_beams: int = 1) -> Batch:
    """A batch of the model's own continuations of the batch's prompts (sources), laid out like the data's
    batches (`targets` = generated tokens up to and including EOS, -100 elsewhere)."""
    model = getattr(model, "module", model)  # generate lives on the unwrapped model
    was_training = model.training
    model.eval()
    settings = dict(max_new_tokens=cfg.max_new_tokens, do_sample=do_sample, num_beams=num_beams, pad_token_id=pad_id,
                    eos_token_id=eos_id, use_cache=True)
    if do_sample:
        settings.update(temperature=cfg.sample_temperature, top_k=0, top_p=1.0)
    try:
        if task == "seq2seq":
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **settings)
            generated = out[:, 1:]  # [B, N] without the decoder start token
            valid = _until_eos(generated, eos_id, pad_id)
            targets = generated.masked_fill(~valid, IGNORE_INDEX)
            return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                    "decoder_input_ids": out[:, :-1],
                    "decoder_attention_mask": torch.cat([torch.ones_like(valid[:, :1]), valid[:, :-1]], 1).long(),
                    "targets": targets}
        prompts = left_padded_prompts(batch, prompt_lengths(batch, cfg.on_policy_prompt_tokens), pad_id)
        out = model.generate(**prompts, **settings)  # [B, P + N]
        width = prompts["input_ids"].shape[1]
        valid = _until_eos(out[:, width:], eos_id, pad_id)  # [B, N]
        attention = torch.cat([prompts["attention_mask"].bool(), valid], 1)  # [B, P + N]
        # logit t predicts token t + 1: targets are the generated tokens, shifted one to the left
        wanted = torch.cat([torch.zeros_like(prompts["attention_mask"], dtype=torch.bool), valid], 1)[:, 1:]
        targets = torch.cat([out[:, 1:].masked_fill(~wanted, IGNORE_INDEX),
                             torch.full_like(out[:, :1], IGNORE_INDEX)], 1)
        return {"input_ids": out.masked_fill(~attention, pad_id), "attention_mask": attention.long(),
                "position_ids": (attention.long().cumsum(-1) - 1).clamp(min=0), "targets": targets}
    finally:
        model.train(was_training)


def _until_eos(generated: torch.Tensor, eos_id: int | None, pad_id: int) -> torch.Tensor:
    """`[B, N]` bool: tokens up to and including the first EOS (all tokens when there is none)."""
    if eos_id is None:
        return torch.ones_like(generated, dtype=torch.bool)
    is_eos = (generated == eos_id).long()
    before = is_eos.cumsum(-1) - is_eos  # EOS seen strictly before this position
    return before == 0
