"""CPU latency and throughput of several models, measured interleaved in one process.

Interleaving (every input goes through every model in turn, in a rotating order) keeps slow drifts of
a shared machine from favouring whichever model happened to run first. Inputs are tokenised up front:
the figures are the model's forward pass alone.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from textdistill.data.classification import Encoded
from textdistill.training.loop import model_inputs


@torch.inference_mode()
def measure_speed(models: dict[str, torch.nn.Module], data: Encoded, latency_examples: int = 200,
                  throughput_batches: int = 10, batch_size: int = 32, seed: int = 0) -> dict[str, dict]:
    """{name: {latency_p50_ms, latency_p95_ms, throughput_per_s}} at batch 1 and batch `batch_size`."""
    for m in models.values():
        m.eval()
    rng = np.random.default_rng(seed)
    singles = [model_inputs(data.collate([int(i)]))
               for i in rng.choice(len(data), size=min(latency_examples, len(data)), replace=False)]
    batches = [model_inputs(data.collate(rng.choice(len(data), size=min(batch_size, len(data)), replace=False).tolist()))
               for _ in range(throughput_batches)]
    names = list(models)
    for name in names:  # warm-up: first calls allocate and pick kernels
        for x in singles[:5] + batches[:1]:
            models[name](**x)
    latency: dict[str, list[float]] = {n: [] for n in names}
    busy: dict[str, float] = {n: 0.0 for n in names}
    for i, x in enumerate(singles):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            models[name](**x)
            latency[name].append(time.perf_counter() - start)
    for i, x in enumerate(batches):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            models[name](**x)
            busy[name] += time.perf_counter() - start
    examples = sum(x["input_ids"].shape[0] for x in batches)
    return {
        name: {
            "latency_p50_ms": statistics.median(latency[name]) * 1e3,
            "latency_p95_ms": float(np.percentile(latency[name], 95)) * 1e3,
            "throughput_per_s": examples / busy[name],
            "threads": torch.get_num_threads(),
        }
        for name in names
    }
