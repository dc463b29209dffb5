"""CPU latency and throughput of several models, measured interleaved in one process.

Interleaving keeps slow drifts of a shared machine from favouring whichever model happened to run first:
the inputs go through the models in blocks of `block` consecutive calls per model, the models' order
rotating from block to block. Consecutive calls within a block let each runtime run as it does when
serving alone (ONNX Runtime's worker threads stay warm between calls; alternating every single call with
another runtime would measure their contention instead). Inputs are tokenised up front: the figures are
the model's forward pass alone.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from textdistill.data.labelled import Encoded
from textdistill.models.inputs import model_inputs


@torch.inference_mode()
def measure_speed(models: dict[str, torch.nn.Module], data: Encoded | dict[str, Encoded], latency_examples: int = 200,
                  throughput_batches: int = 10, batch_size: int = 32, seed: int = 0, block: int = 10) -> dict[str, dict]:
    """{name: {latency_p50_ms, latency_p95_ms, throughput_per_s}} at batch 1 and batch `batch_size`.

    `data` is one tokenised split for all models, or one per model name: the same examples tokenised by
    each model's own tokenizer (a student with a pruned vocabulary), so every model gets the same texts.
    """
    for m in models.values():
        m.eval()
    per_model = data if isinstance(data, dict) else {name: data for name in models}
    n = len(next(iter(per_model.values())))
    rng = np.random.default_rng(seed)
    single_index = [[int(i)] for i in rng.choice(n, size=min(latency_examples, n), replace=False)]
    batch_index = [rng.choice(n, size=min(batch_size, n), replace=False).tolist() for _ in range(throughput_batches)]
    singles = {name: [model_inputs(d.collate(i)) for i in single_index] for name, d in per_model.items()}
    batches = {name: [model_inputs(d.collate(i)) for i in batch_index] for name, d in per_model.items()}
    names = list(models)
    for name in names:  # warm-up: first calls allocate and pick kernels
        for x in singles[name][:5] + batches[name][:1]:
            models[name](**x)
    latency: dict[str, list[float]] = {n: [] for n in names}
    busy: dict[str, float] = {n: 0.0 for n in names}
    for b, first in enumerate(range(0, len(single_index), block)):
        for name in names[b % len(names):] + names[: b % len(names)]:
            for x in singles[name][first : first + block]:
                start = time.perf_counter()
                models[name](**x)
                latency[name].append(time.perf_counter() - start)
    for i in range(len(batch_index)):
        for name in names[i % len(names):] + names[: i % len(names)]:
            x = batches[name][i]
            start = time.perf_counter()
            models[name](**x)
            busy[name] += time.perf_counter() - start
    examples = sum(len(i) for i in batch_index)
    return {
        name: {
            "latency_p50_ms": statistics.median(latency[name]) * 1e3,
            "latency_p95_ms": float(np.percentile(latency[name], 95)) * 1e3,
            "throughput_per_s": examples / busy[name],
            "threads": torch.get_num_threads(),
        }
        for name in names
    }
