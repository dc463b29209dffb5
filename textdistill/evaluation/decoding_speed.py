"""Greedy generation speed of Hugging Face models (causal or encoder-decoder), measured interleaved.

Every batch goes through every model in turn, in a rotating order, so slow drifts of a shared machine
(another job, thermal throttling) do not favour whichever model ran first, and teacher/student ratios
stay fair. Each call generates exactly `max_new_tokens` (end-of-sequence does not stop it early), so
tokens per second compare models that would stop at different lengths.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from textdistill.data.batching import pad_rows
from textdistill.errors import TextDistillError


def _generate(model, batch: dict[str, torch.Tensor], max_new_tokens: int, pad_token_id: int) -> None:
    model.generate(**batch, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                   min_new_tokens=max_new_tokens, pad_token_id=pad_token_id)


@torch.inference_mode()
def measure_generation_speed(
    models: dict[str, torch.nn.Module],
    prompts: Sequence[Sequence[int]],
    pad_token_id: int,
    max_new_tokens: int = 32,
    batch_sizes: Sequence[int] = (1, 8),
    calls: int = 10,
    warmup: int = 1,
) -> dict[str, dict[str, dict[str, float]]]:
    """{name: {"batch_<b>": {latency_p50_ms, latency_p95_ms, tokens_per_s, sequences_per_s, calls}}}.

    `prompts`: token ids shared by all models (they share a tokenizer, as distillation needs); batch b
    takes `calls` consecutive groups of b prompts, cycling through `prompts`. Latency is one whole
    `generate` call (all `max_new_tokens` steps) on the model's current device; `warmup` untimed calls
    per model and batch size come first (first calls allocate and pick kernels).
    """
    if not models or not prompts or calls < 1 or max_new_tokens < 1:
        raise TextDistillError("measure_generation_speed needs models, prompts, calls >= 1 and max_new_tokens >= 1")
    names = list(models)
    for model in models.values():
        model.eval()
    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in names}
    for b in batch_sizes:
        groups = [[prompts[(i * b + j) % len(prompts)] for j in range(b)] for i in range(warmup + calls)]
        batches = {name: [_to_device(_padded(g, pad_token_id, left=not _is_encoder_decoder(models[name])),
                                     models[name]) for g in groups] for name in names}
        for name in names:
            for batch in batches[name][:warmup]:
                _generate(models[name], batch, max_new_tokens, pad_token_id)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for i in range(calls):
            for name in names[i % len(names):] + names[: i % len(names)]:
                _synchronize(models[name])
                start = time.perf_counter()
                _generate(models[name], batches[name][warmup + i], max_new_tokens, pad_token_id)
                _synchronize(models[name])
                seconds[name].append(time.perf_counter() - start)
        for name in names:
            s = np.array(seconds[name])
            results[name][f"batch_{b}"] = {
                "latency_p50_ms": float(np.percentile(s, 50) * 1000),
                "latency_p95_ms": float(np.percentile(s, 95) * 1000),
                "tokens_per_s": float(b * max_new_tokens * calls / s.sum()),
                "sequences_per_s": float(b * calls / s.sum()),
                "calls": calls,
            }
    return results


def _padded(prompts: Sequence[Sequence[int]], pad_token_id: int, left: bool) -> dict[str, torch.Tensor]:
    ids, mask = pad_rows([list(p) for p in prompts], pad_token_id, left)  # [B, longest] each
    return {"input_ids": ids, "attention_mask": mask}


def _is_encoder_decoder(model) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def _to_device(batch: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


def _synchronize(model) -> None:
    if next(model.parameters()).device.type == "cuda":  # kernels run asynchronously; time their end
        torch.cuda.synchronize()
