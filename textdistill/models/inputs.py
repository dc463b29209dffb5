"""What a batch hands to a model: the forward inputs of every task, logits and hidden states, prompts.

Batches of every task share one vocabulary of keys: `input_ids`, `attention_mask`, optional
`token_type_ids` (sentence pairs), `decoder_input_ids` and `decoder_attention_mask` (encoder-decoders),
`position_ids` (sampled, left-padded sequences); `targets` and `teacher_*` entries are for the objective
and never reach the model.
"""

from __future__ import annotations

import torch

Batch = dict[str, torch.Tensor]
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids", "decoder_attention_mask",
                "position_ids")


def model_inputs(batch: Batch) -> Batch:
    """The entries of `batch` that are model inputs."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def _no_cache(model: torch.nn.Module) -> dict:
    # generative models build a key/value cache by default; a training or scoring forward has no use for it
    can_generate = getattr(model, "can_generate", None)
    return {"use_cache": False} if callable(can_generate) and can_generate() else {}


def logits_of(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The model's logits on the batch: `[B, C]` for a classifier, `[B, T, V]` aligned with `batch['targets']`
    for a causal LM or an encoder-decoder."""
    return model(**model_inputs(batch), **_no_cache(model)).logits


def last_hidden(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """`[B, T, D]` hidden states that a generative model's LM head turns into `logits_of(model, batch)`."""
    return model.base_model(**model_inputs(batch), **_no_cache(model)).last_hidden_state


def prompt_lengths(batch: Batch, fallback_tokens: int) -> torch.Tensor:
    """Prompt tokens per causal-LM example `[B]`; plain text (no prompt) uses its first `fallback_tokens`."""
    lengths = batch["attention_mask"].sum(-1)  # [B]
    own = batch["prompt_length"]
    fallback = torch.minimum(torch.full_like(lengths, fallback_tokens), (lengths - 1).clamp(min=1))
    return torch.where(own > 1, own, fallback)


def left_padded_prompts(batch: Batch, lengths: torch.Tensor, pad_id: int) -> Batch:
    """The first `lengths[b]` tokens of each row, left-padded (what batched generation needs)."""
    width = int(lengths.max())
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long, device=lengths.device)
    mask = torch.zeros_like(ids)
    for b, n in enumerate(lengths.tolist()):
        ids[b, width - n:] = batch["input_ids"][b, :n]
        mask[b, width - n:] = 1
    return {"input_ids": ids, "attention_mask": mask}
