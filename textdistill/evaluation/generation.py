"""Evaluating generation models: held-out perplexity, teacher-student token agreement, decoded text
(BLEU/chrF, ROUGE-L through `text_metrics`) and greedy decoding speed (through `generation_speed`).

Perplexity and agreement are teacher-forced on the held-out references, over target tokens only
(prompt tokens are never scored). The text metrics and speed measurements belong to
`textdistill.evaluation.text_metrics` and `generation_speed`, imported when used.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from textdistill.data.classification import sequential_batches
from textdistill.data.generation import TokenData
from textdistill.losses import IGNORE_INDEX, cross_entropy, masked_sum
from textdistill.training.generation import left_padded_prompts, logits_of

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


def perplexity(total_nll: float, n_tokens: int) -> float:
    try:
        from textdistill.evaluation import text_metrics
    except ImportError:
        return math.exp(total_nll / max(n_tokens, 1))
    return float(text_metrics.perplexity(total_nll, n_tokens))


@torch.inference_mode()
def token_agreement(student: torch.nn.Module, teacher: torch.nn.Module, data: TokenData, batch_size: int,
                    shared: int) -> float:
    """Share of held-out target positions where the student's and the teacher's most likely next token
    (over the shared ids, teacher-forced on the reference) are the same."""
    same, count = 0, 0
    for index in sequential_batches(data.lengths, batch_size):
        batch = data.collate(index)
        mask = batch["targets"] != IGNORE_INDEX
        s = logits_of(student, batch)[mask][:, :shared].argmax(-1)  # [N]
        t = logits_of(teacher, batch)[mask][:, :shared].argmax(-1)  # [N]
        same += int((s == t).sum())
        count += int(mask.sum())
    return same / max(count, 1)


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
    if not names:
        return {}
    try:
        from textdistill.evaluation import text_metrics
    except ImportError:
        log.warning("textdistill.evaluation.text_metrics is not available; %s not measured", ", ".join(names))
        return {}
    return {name: float(getattr(text_metrics, name)(hyps, refs)) for name in names}


@torch.inference_mode()
def generation_speed(models: dict[str, torch.nn.Module], data: TokenData, max_new_tokens: int,
                     prompts: int) -> dict[str, dict]:
    """Greedy decoding of `prompts` test examples one at a time, models interleaved in one process:
    tokens per second and median latency per example. Uses `generation_speed.measure` when that module
    offers it, else this loop (same definition: new tokens / wall seconds, batch 1, KV cache on)."""
    try:
        from textdistill.evaluation import generation_speed as speed_module
        measure = getattr(speed_module, "measure", None)
    except ImportError:
        measure = None
    sample = data.subset(list(range(min(prompts, len(data)))))
    if measure is not None:
        try:
            return measure(models, sample, max_new_tokens)
        except TypeError:
            log.warning("generation_speed.measure has another signature; timing with the built-in loop")
    times = {name: [] for name in models}
    tokens = {name: 0 for name in models}
    for i in range(len(sample)):
        batch = sample.collate([i])
        for name, model in models.items():
            settings = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=sample.pad_id)
            start = time.perf_counter()
            if sample.task == "seq2seq":
                ids = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **settings)
                new = ids.shape[1] - 1
            else:
                n = max(1, int(batch["prompt_length"][0]))
                ids = model.generate(input_ids=batch["input_ids"][:, :n], attention_mask=batch["attention_mask"][:, :n],
                                     **settings)
                new = ids.shape[1] - n
            times[name].append(time.perf_counter() - start)
            tokens[name] += new
    return {name: {"tokens_per_s": tokens[name] / max(sum(times[name]), 1e-9),
                   "latency_p50_ms": 1000 * float(np.median(times[name])),
                   "mean_new_tokens": tokens[name] / max(len(sample), 1), "threads": torch.get_num_threads()}
            for name in models}
