"""The training loop: plain PyTorch, `accelerate` for device placement and mixed precision.

One loop serves teacher fine-tuning, distillation and the no-teacher baseline; what differs is the
`objective`, a function `(model, batch, progress) -> {term name: summed loss}` that runs the forward
pass itself (so it can ask for hidden states, sample, or score with a teacher); `progress` is the share
of training done, in [0, 1], for schedules. Each term is a sum over the units
of a micro-batch (examples, or target tokens for generation, as `count` says); the loop divides by the
units of the whole optimizer step, counted before the micro-batch loop, so accumulation gives the same
update as one big batch.

The data is any object with `__len__`, `lengths` (one int per example, for length bucketing) and
`collate(index) -> dict of tensors`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from textdistill.config import TrainConfig
from textdistill.data.classification import bucketed_batches
from textdistill.training.checkpoint import load_weights, save_weights

Batch = dict[str, torch.Tensor]
Objective = Callable[[torch.nn.Module, Batch, float], dict[str, torch.Tensor]]
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LOG_EVERY = 10


@dataclass
class TrainResult:
    steps: int
    seconds: float
    best_step: int
    best_score: float | None
    history: list[dict] = field(default_factory=list)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())


def model_inputs(batch: Batch) -> Batch:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def count_examples(batch: Batch) -> int:
    """The unit of normalisation for classification: one per example."""
    return batch["input_ids"].shape[0]


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # biases and LayerNorm gains are not weight-decayed (BERT's recipe)
        (no_decay if param.dim() < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    per_epoch = math.ceil(math.ceil(n_examples / cfg.batch_size) / cfg.grad_accum_steps)
    steps = max(1, math.ceil(cfg.epochs * per_epoch))
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def _step_groups(data, cfg: TrainConfig, steps: int):
    """Yield (epoch, [micro-batch indices, ...]) for each optimizer step, epoch after epoch."""
    done, epoch = 0, 0
    while done < steps:
        batches = bucketed_batches(data.lengths, cfg.batch_size, cfg.seed, epoch)
        for i in range(0, len(batches), cfg.grad_accum_steps):
            yield epoch, batches[i : i + cfg.grad_accum_steps]
            done += 1
            if done == steps:
                return
        epoch += 1


def accumulate_gradients(model: torch.nn.Module, batches: list[Batch], objective: Objective,
                         accelerator: Accelerator, count: Callable[[Batch], int] = count_examples,
                         progress: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Backward over the micro-batches of one optimizer step; returns the step's loss and terms (detached).

    The step's unit count is taken before the micro-batch loop and every micro-batch is divided by it,
    so the summed gradient equals that of one batch holding all the examples.
    """
    total_units = max(sum(count(b) for b in batches), 1)  # an all-masked step gives 0, not NaN
    total = torch.zeros((), device=accelerator.device)
    totals: dict[str, torch.Tensor] = {}
    for batch in batches:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            terms = objective(model, batch, progress)
        loss = sum(terms.values()) / total_units
        accelerator.backward(loss)
        total += loss.detach()
        for k, v in terms.items():
            totals[k] = totals.get(k, 0) + v.detach() / total_units
    return total, totals


def train(
    model: torch.nn.Module,
    data,
    objective: Objective,
    cfg: TrainConfig,
    *,
    name: str,
    run_dir: Path,
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
    metric: str = "accuracy",
    count: Callable[[Batch], int] = count_examples,
) -> TrainResult:
    """Train `model` in place; with `evaluate`, keep the best state by `metric` and restore it at the end."""
    torch.manual_seed(cfg.seed)
    accelerator = make_accelerator(cfg)
    steps = total_steps(len(data), cfg)
    per_epoch = math.ceil(math.ceil(len(data) / cfg.batch_size) / cfg.grad_accum_steps)
    eval_every = cfg.eval_every or per_epoch
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    optimizer = _optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    metrics_path = run_dir / "metrics.jsonl"
    best_path = run_dir / "checkpoints" / f"{name}-best.safetensors"
    result = TrainResult(steps=0, seconds=0.0, best_step=0, best_score=None)
    since_best = 0
    running = torch.zeros((), device=accelerator.device)
    running_terms: dict[str, torch.Tensor] = {}
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=name, disable=not cfg.progress, dynamic_ncols=True, mininterval=1.0)
    with metrics_path.open("a", encoding="utf-8") as log_file:
        def record(entry: dict) -> None:
            result.history.append(entry)
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()

        for step, (epoch, group) in enumerate(_step_groups(data, cfg, steps), start=1):
            loss, terms = accumulate_gradients(model, [data.collate(index) for index in group], objective,
                                               accelerator, count, progress=(step - 1) / steps)
            running += loss
            for k, v in terms.items():
                running_terms[k] = running_terms.get(k, 0) + v
            if cfg.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)

            if step % LOG_EVERY == 0 or step == steps:
                n = step % LOG_EVERY or LOG_EVERY
                entry = {"run": name, "step": step, "epoch": round(step / per_epoch, 3),
                         "loss": running.item() / n, "lr": scheduler.get_last_lr()[0],
                         "elapsed_s": round(time.perf_counter() - start, 2)}
                entry.update({f"loss_{k}": float(v) / n for k, v in running_terms.items()})
                record(entry)
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
                running.zero_()
                running_terms.clear()

            if evaluate is not None and (step % eval_every == 0 or step == steps):
                model.eval()
                scores = evaluate(accelerator.unwrap_model(model))
                model.train()
                score = scores[metric]
                record({"run": name, "step": step, "epoch": round(step / per_epoch, 3), "split": "validation",
                        **{k: v for k, v in scores.items() if isinstance(v, (int, float))}})
                if result.best_score is None or score > result.best_score:
                    result.best_score, result.best_step, since_best = score, step, 0
                    save_weights(accelerator.unwrap_model(model), best_path)
                else:
                    since_best += 1
                    if cfg.early_stopping_patience is not None and since_best >= cfg.early_stopping_patience:
                        bar.write(f"{name}: early stop at step {step}, best {metric} {result.best_score:.4f} "
                                  f"at step {result.best_step}")
                        result.steps = step
                        break
            result.steps = step
    bar.close()
    result.seconds = time.perf_counter() - start
    model = accelerator.unwrap_model(model)
    if evaluate is not None and best_path.exists():
        load_weights(model, best_path)
    model.eval()
    return result
