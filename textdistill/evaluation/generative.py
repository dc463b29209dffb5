"""Evaluating generation models: held-out perplexity, teacher-student token agreement, decoded text
(BLEU/chrF, ROUGE-L) and greedy decoding speed.

Perplexity and agreement are teacher-forced on the held-out references, over target tokens only
(prompt tokens are never scored). The metric formulas live in `textdistill.evaluation.text_metrics` and
the timing in `decoding_speed`.
"""

from __future__ import annotations

import logging

import torch

from textdistill.data.batching import sequential_batches
from textdistill.data.pairs import TokenData
from textdistill.evaluation import text_metrics
from textdistill.evaluation.decoding_speed import measure_generation_speed
from textdistill.losses import IGNORE_INDEX, cross_entropy, masked_sum
from textdistill.models.inputs import left_padded_prompts, logits_of

log = logging.getLogger("textdistill")


@torch.inference_mode()
def heldout_nll(model: torch.nn.Module, data: TokenData, batch_size: int) -> tuple[float, int]:
    """(summed negative log-likelihood in nats, target tokens) of the references under `model`."""
    total, count = 0.0, 0
    for index in sequential_batches(data.lengths, batch_size):
        batch = data.collate(index)
        targets = batch["targets"]
        total += float(masked_sum(cross_entropy(logits_of(model, batch), targets), targets != IGNORE_INDEX))
        count += int((targets != IGNORE_INDEX).sum())
    return total, count


@torch.inference_mode()
def token_agreement(student: torch.nn.Module, teacher: torch.nn.Module, data: TokenData, batch_size: int,
                    shared: int) -> float:
    """Share of held-out target positions where the student's and the teacher's most likely next token
    (over the shared ids, teacher-forced on the reference) are the same (`text_metrics.token_agreement`)."""
    student_ids, teacher_ids = [], []
    for index in sequential_batches(data.lengths, batch_size):
        batch = data.collate(index)
        mask = batch["targets"] != IGNORE_INDEX
        student_ids.append(logits_of(student, batch)[mask][:, :shared].argmax(-1))  # [N]
        teacher_ids.append(logits_of(teacher, batch)[mask][:, :shared].argmax(-1))  # [N]
    return float(text_metrics.token_agreement(torch.cat(student_ids), torch.cat(teacher_ids)))


@torch.inference_mode()
def greedy_decode(model: torch.nn.Module, data: TokenData, tokenizer, max_new_tokens: int,
                  batch_size: int) -> list[str]:
    """Greedy continuations of every example's prompt (causal LM) or source (seq2seq), as text, in order."""
    out: list[str | None] = [None] * len(data)
    pad = data.pad_id
    for index in sequential_batches(data.lengths, batch_size):
        batch = data.collate(index)
        settings = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
                        eos_token_id=tokenizer.eos_token_id)
        if data.task == "seq2seq":
            ids = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **settings)
            new = ids[:, 1:]
        else:
            prompts = left_padded_prompts(batch, batch["prompt_length"].clamp(min=1), pad)
            ids = model.generate(**prompts, **settings)
            new = ids[:, prompts["input_ids"].shape[1]:]
        for i, row in zip(index, new.tolist()):
            out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return out  # type: ignore[return-value]


def references(data: TokenData, tokenizer) -> list[str]:
    """The reference responses (targets) as text."""
    return [tokenizer.decode([t for t in labels if t != IGNORE_INDEX], skip_special_tokens=True).strip()
            for labels in data.labels]


def text_scores(hyps: list[str], refs: list[str], kind: str) -> dict:
    """BLEU and chrF for parallel data, ROUGE-L for prompt/response data (via `text_metrics`)."""
    names = {"parallel": ("bleu", "chrf"), "prompt_response": ("rouge_l",)}.get(kind, ())
    return {name: float(getattr(text_metrics, name)(hyps, refs)) for name in names}


def speed_prompts(data: TokenData, n: int, prompt_tokens: int) -> list[list[int]]:
    """Token ids of the first `n` test prompts: the prompt of a causal-LM example (plain text: its first
    `prompt_tokens` tokens), the source of a seq2seq one."""
    out = []
    for i in range(min(n, len(data))):
        if data.task == "seq2seq":
            out.append(data.input_ids[i])
        else:
            p = data.prompt_lengths[i]
            p = p if p > 1 else min(prompt_tokens, len(data.input_ids[i]) - 1)
            out.append(data.input_ids[i][: max(p, 1)])
    return out


def generation_speed(models: dict[str, torch.nn.Module], data: TokenData, max_new_tokens: int, prompts: int,
                     prompt_tokens: int = 8) -> dict[str, dict]:
    """Greedy decoding speed at batch 1 (`generation_speed.measure_generation_speed`: models interleaved,
    exactly `max_new_tokens` per call): tokens per second and latency p50/p95 per call."""
    ids = speed_prompts(data, prompts, prompt_tokens)
    measured = measure_generation_speed(models, ids, data.pad_id, max_new_tokens=max_new_tokens, batch_sizes=(1,),
                                        calls=len(ids))
    return {name: {**m["batch_1"], "threads": torch.get_num_threads(), "new_tokens_per_call": max_new_tokens}
            for name, m in measured.items()}
