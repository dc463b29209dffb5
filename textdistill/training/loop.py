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

import contextlib
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from textdistill.config import TrainConfig
from textdistill.data.batching import bucketed_batches
from textdistill.models.inputs import Batch
from textdistill.atomic import write_failed
from textdistill.training.distributed import check_data_parallel, process_share
from textdistill.precision import autocast, resolve_precision, set_dropout
from textdistill.training.checkpoints import (Progress, check_name, keep_metrics_until, load_weights,
                                              newest_checkpoint, restore_checkpoint, save_checkpoint, save_weights)
from textdistill.training.stopping import FiniteWatch, Interrupted, StopRequest, earliest_end
from textdistill.training.tracking import Tracking

Objective = Callable[[torch.nn.Module, Batch, float], dict[str, torch.Tensor]]
# a micro-batch's units: one count for every term, or a count per term name ("*" for the rest)
Count = Callable[[Batch], "int | float | dict[str, float]"]
LOG_EVERY = 10
log = logging.getLogger("textdistill")


@dataclass
class TrainResult:
    steps: int
    seconds: float
    best_step: int
    best_score: float | None
    history: list[dict] = field(default_factory=list)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The process's Accelerator. bfloat16 autocast is applied by the loop itself (`precision.autocast`):
    accelerate keeps one mixed-precision setting per process and refuses a second, while a run (or a test
    session) trains models under different settings. fp16 goes through accelerate for its loss scaling."""
    fp16 = resolve_precision(cfg.mixed_precision) == "fp16"
    return Accelerator(mixed_precision="fp16" if fp16 else "no", cpu=not torch.cuda.is_available())


def count_examples(batch: Batch) -> int:
    """The unit of normalisation for classification: one per example."""
    return batch["input_ids"].shape[0]


def _optimizer(modules: list[torch.nn.Module], cfg: TrainConfig,
               own_rates: list[tuple[torch.nn.Module, float]] = (), fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW over `modules` at train.learning_rate, and over each of `own_rates`' modules at its own rate.

    `fused` (default: where every parameter is a float tensor on a CPU or a CUDA GPU) uses AdamW's fused kernel,
    the same update as the default multi-tensor one in one pass over the weights: on the 2-core CPU of the
    measurement log the MiniLM teacher's fine-tuning step ran 1.15-1.25x faster (benchmarks/optimizer_step.py)."""
    groups = []
    for part, lr in [(modules, cfg.learning_rate)] + [([m], lr) for m, lr in own_rates]:
        decay, no_decay = [], []
        for param in (p for m in part for p in m.parameters()):
            if not param.requires_grad:
                continue
            # biases and LayerNorm gains are not weight-decayed (BERT's recipe)
            (no_decay if param.dim() < 2 else decay).append(param)
        groups += [{"params": decay, "weight_decay": cfg.weight_decay, "lr": lr},
                   {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    params = [p for g in groups for p in g["params"]]
    if fused is None:
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=fused or None)


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
                         accelerator: Accelerator, count: Count = count_examples,
                         progress: float = 0.0, idle: bool = False, extra: torch.nn.Module | None = None,
                         precision: str = "no") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Backward over this process's micro-batches of one optimizer step; returns its loss and terms (detached).

    The step's unit counts (over every process) are taken before the micro-batch loop and every micro-batch
    is divided by them, so the summed gradient equals that of one batch holding all the examples. `count`
    gives one count for every term, or a count per term name ("*" for the others: e.g. the cross-entropy
    over labelled examples only, the soft term over every example). With `idle`, this process has no
    example in the step: its batch is weighted 0 and only joins the gradient all-reduce, which every
    process must reach.
    """
    per_batch = [_units(count(b)) for b in batches]
    keys = sorted(per_batch[0])
    units = torch.tensor([0.0 if idle else sum(u[k] for u in per_batch) for k in keys], device=accelerator.device)
    if accelerator.num_processes > 1:
        units = accelerator.reduce(units, "sum")
    divisors = dict(zip(keys, units.clamp(min=1)))  # an all-masked step gives 0, not NaN
    total = torch.zeros((), device=accelerator.device)
    totals: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(batches):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        # processes all-reduce their gradients once per step, in the last micro-batch's backward
        sync = contextlib.nullcontext() if i == len(batches) - 1 else accelerator.no_sync(model)
        with sync:
            with accelerator.autocast(), autocast(precision, accelerator.device):
                terms = objective(model, batch, progress)
            if idle:
                terms = {k: v * 0.0 for k, v in terms.items()}
            parts = {k: v / divisors.get(k, divisors["*"]) for k, v in terms.items()}
            loss = sum(parts.values())
            # data parallelism averages gradients over processes; each process holds a share of the sum
            accelerator.backward(loss * accelerator.num_processes)
        total += loss.detach()
        for k, v in parts.items():
            totals[k] = totals.get(k, 0) + v.detach()
    if extra is not None and accelerator.num_processes > 1:
        _average_gradients(extra, accelerator)
    return total, totals


def _units(counted: int | float | dict[str, float]) -> dict[str, float]:
    """A micro-batch's units per term: one number for every term ("*"), or a count per term name."""
    if isinstance(counted, dict):
        if "*" not in counted:
            raise ValueError("a count per term needs a '*' entry for the other terms")
        return {k: float(v) for k, v in counted.items()}
    return {"*": float(counted)}


def _average_gradients(module: torch.nn.Module, accelerator: Accelerator) -> None:
    """What data parallelism does for the model, done by hand for extra modules (small: projections)."""
    for param in module.parameters():
        if param.requires_grad:
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            param.grad = accelerator.reduce(grad, "mean")


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
    count: Count = count_examples,
    extra: torch.nn.Module | None = None,
    extra_learning_rates: dict[str, float] | None = None,
    resume: bool = False,
    identity: dict | None = None,
    tracking: Tracking | None = None,
) -> TrainResult:
    """Train `model` in place; with `evaluate`, keep the best state by `metric` and restore it at the end.

    `extra` holds trained modules that are not part of the model (projection layers, heads, a teacher or
    peers trained online): optimised and checkpointed with it, never exported. The children of `extra` named
    in `extra_learning_rates` train at their own peak rate and have their gradients clipped on their own (a
    teacher fine-tuned in the loop must not shrink the student's step). With `resume`, training continues
    from the newest checkpoint of `name` in `run_dir/checkpoints` and ends with the weights an uninterrupted
    run would have; `identity` (e.g. the checksum of the teacher outputs) must then match the checkpoint's.
    `tracking` (the run's experiment trackers) gets every line `metrics.jsonl` gets.
    """
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(True)
    accelerator = make_accelerator(cfg)
    precision = resolve_precision(cfg.mixed_precision, accelerator.device)
    precision = "no" if precision == "fp16" else precision  # fp16 autocast comes from the accelerator
    check_data_parallel(accelerator)
    main = accelerator.is_main_process
    steps = total_steps(len(data), cfg)
    per_epoch = math.ceil(math.ceil(len(data) / cfg.batch_size) / cfg.grad_accum_steps)
    eval_every = cfg.eval_every or per_epoch
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if extra is not None:
        extra.to(accelerator.device).train()
    rates = extra_learning_rates or {}
    own_rates = [(extra[name], lr) for name, lr in rates.items()]
    shared = [model] if extra is None else [model, extra] if not rates else \
        [model] + [m for name, m in extra.named_children() if name not in rates]
    optimizer = _optimizer(shared, cfg, own_rates)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    set_dropout(model, cfg.dropout)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    checkpoints = run_dir / "checkpoints"
    best_path = checkpoints / f"{check_name(name)}-best.safetensors"
    metrics_path = run_dir / "metrics.jsonl"
    objects = dict(accelerator=accelerator, model=model, extra=extra, optimizer=optimizer, scheduler=scheduler,
                   best_path=best_path, cfg=cfg)
    identity = identity or {}
    progress = Progress()
    found = newest_checkpoint(checkpoints, name) if resume else None
    if found is not None:
        progress = restore_checkpoint(found, identity=identity, **objects)
        log.info("%s: resuming from %s (step %d of %d)", name, found.name, progress.step, steps)
    elif main and best_path.exists():
        best_path.unlink()  # left by an attempt that never reached a checkpoint
    last_good = f"the last good checkpoint is {found}" if found else "no checkpoint was written yet"
    history = keep_metrics_until(metrics_path, name, progress.step) if main else []
    result = TrainResult(steps=progress.step, seconds=progress.seconds, best_step=progress.best_step,
                         best_score=progress.best_score, history=history)

    running = {k: torch.tensor(v, device=accelerator.device) for k, v in progress.running.items()}
    watch = FiniteWatch(name, accelerator)
    start = time.perf_counter() - progress.seconds
    bar = tqdm(total=steps, initial=progress.step, desc=name, disable=not (cfg.progress and main),
               dynamic_ncols=True, mininterval=1.0)
    log_file = metrics_path.open("a", encoding="utf-8") if main else contextlib.nullcontext()

    def record(entry: dict) -> None:
        """The one place a metric goes out: the history, metrics.jsonl and the experiment trackers."""
        result.history.append(entry)
        if main:
            try:
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
            except OSError as e:
                raise write_failed(metrics_path, e) from None
            if tracking is not None:
                tracking.record(entry)

    # Resuming skips the steps already done: the data order is a pure function of (seed, epoch).
    todo = [] if progress.finished else itertools.islice(enumerate(_step_groups(data, cfg, steps), 1),
                                                          progress.step, None)
    with StopRequest() as stop, log_file:
        for step, (epoch, group) in todo:
            share = process_share(group, accelerator.process_index, accelerator.num_processes)
            batches = [data.collate(index) for index in share] or [data.collate(group[0][:1])]
            loss, terms = accumulate_gradients(model, batches, objective, accelerator, count,
                                               progress=(step - 1) / steps, idle=not share, extra=extra,
                                               precision=precision)
            watch.record(step, loss, terms, group, last_good)
            for k, v in {"loss": loss, **terms}.items():
                running[k] = running.get(k, 0) + v
            if cfg.max_grad_norm is not None:
                for parameters in _clipped_groups(shared, own_rates):
                    accelerator.clip_grad_norm_(parameters, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.step = step
            bar.update(1)

            if step % LOG_EVERY == 0 or step == steps:
                watch.check(accelerator, last_good)
                n = step % LOG_EVERY or LOG_EVERY
                sums = dict(zip(running, accelerator.reduce(torch.stack(list(running.values())), "sum").tolist()))
                entry = {"run": name, "step": step, "epoch": round(step / per_epoch, 3),
                         "loss": sums.pop("loss") / n, "lr": scheduler.get_last_lr()[0],
                         "elapsed_s": round(time.perf_counter() - start, 2)}
                entry.update({f"loss_{k}": v / n for k, v in sums.items()})
                record(entry)
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
                running.clear()

            if evaluate is not None and (step % eval_every == 0 or step == steps):
                watch.check(accelerator, last_good)
                model.eval()
                scores = evaluate(accelerator.unwrap_model(model))
                model.train()
                score = scores[metric]
                record({"run": name, "step": step, "epoch": round(step / per_epoch, 3), "split": "validation",
                        **{k: v for k, v in scores.items() if isinstance(v, (int, float))}})
                if progress.best_score is None or score > progress.best_score:
                    progress.best_score, progress.best_step, progress.since_best = score, step, 0
                    if main:
                        save_weights(accelerator.unwrap_model(model), best_path)
                else:
                    progress.since_best += 1
                    if (cfg.early_stopping_patience is not None and progress.since_best >= cfg.early_stopping_patience
                            and step >= cfg.min_steps):
                        if main:
                            bar.write(f"{name}: early stop at step {step}, best {metric} "
                                      f"{progress.best_score:.4f} at step {progress.best_step}")
                        progress.finished = True
                if main and not progress.finished and step < steps:
                    _log_outlook(name, step, steps, metric, scores[metric], progress,
                                 earliest_end(step, progress.since_best, cfg.early_stopping_patience, eval_every,
                                              cfg.min_steps, steps), time.perf_counter() - start)

            progress.finished = progress.finished or step == steps
            # with several processes, agreeing on a stop is a collective: ask only at log steps
            signum = stop.agreed(accelerator) if accelerator.num_processes == 1 or step % LOG_EVERY == 0 else None
            if progress.finished or signum or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                watch.check(accelerator, last_good)
                progress.seconds = time.perf_counter() - start
                progress.running = {k: float(v) for k, v in running.items()}
                found = save_checkpoint(checkpoints, name, progress, identity=identity, keep=cfg.keep_checkpoints,
                                        run_config=run_dir / "config.yaml", **objects)
                last_good = f"the last good checkpoint is {found}"
            if signum:
                raise Interrupted(f"{name}: stopped at step {step} by signal {signum}; checkpoint saved in "
                                  f"{found}", signum)
            if progress.finished:
                break
    bar.close()
    result.steps, result.seconds = progress.step, time.perf_counter() - start
    result.best_step, result.best_score = progress.best_step, progress.best_score
    model = accelerator.unwrap_model(model)
    if evaluate is not None and best_path.exists():
        load_weights(model, best_path)
    model.eval()
    return result


def _log_outlook(name: str, step: int, steps: int, metric: str, score: float, progress: Progress, earliest: int,
                 elapsed: float) -> None:
    """After an evaluation: the score, the best so far, and when the training will end (between the first step
    early stopping could end it and the last), in minutes at the rate so far; the bar's ETA is the latest."""
    per_step = elapsed / step
    when = (f"at step {steps}" if earliest == steps else f"between step {earliest} and {steps}")
    minutes = " and ".join(f"{(end - step) * per_step / 60:.0f}" for end in dict.fromkeys((earliest, steps)))
    log.info("%s: step %d, validation %s %.4f (best %.4f at step %d); ends %s, %s min from now at %.2f s a step",
             name, step, metric, score, progress.best_score, progress.best_step, when, minutes, per_step)


def _clipped_groups(shared: list[torch.nn.Module],
                    own_rates: list[tuple[torch.nn.Module, float]]) -> list[list[torch.nn.Parameter]]:
    """The parameter sets whose gradient norm is clipped together: the model with the extra modules that share
    its learning rate, then each module with its own rate."""
    return [[p for m in shared for p in m.parameters()]] + [list(m.parameters()) for m, _ in own_rates]
