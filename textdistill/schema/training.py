"""The `train` section: how a model is trained (the student, the baseline and a teacher fine-tune)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textdistill.schema.fields import CLASSIFICATION, doc


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = doc(2.0, "Passes over the training data (may be fractional).")
    max_steps: int | None = doc(None, "Stop after this many optimizer steps (overrides epochs when smaller).")
    batch_size: int = doc(32, "Examples per micro-batch.")
    grad_accum_steps: int = doc(1, "Micro-batches per optimizer step; the update equals one big batch.")
    learning_rate: float = doc(3e-4, "Peak AdamW learning rate.")
    weight_decay: float = doc(0.01, "AdamW weight decay (not applied to biases and LayerNorm).")
    warmup_ratio: float = doc(0.1, "Share of steps with linear warmup before linear decay to zero.")
    max_grad_norm: float | None = doc(1.0, "Clip the gradient norm to this value; empty turns clipping off.")
    eval_every: int = doc(0, "Evaluate on validation every N optimizer steps; 0 means once per epoch.")
    early_stopping_patience: int | None = doc(
        None, "Stop after this many evaluations without improvement; empty trains for the full budget."
    )
    min_steps: int = doc(0, "Optimizer steps trained at least before early stopping may end the training.")
    select_on: Literal["accuracy", "macro_f1"] = doc(
        "accuracy",
        "The validation metric that picks the kept checkpoint and decides early stopping: 'accuracy', or "
        "'macro_f1' (every class counts the same, so a checkpoint that drops a rare class is not kept; for "
        "data whose classes are far from equal in size). Student and baseline use the same.",
        tasks=CLASSIFICATION,
    )
    freeze_embeddings: bool = doc(
        True,
        "Keep the word-embedding matrix fixed. It holds most of a small student's parameters, so freezing "
        "it makes each step much cheaper; the copied teacher embeddings are already good.",
    )
    seed: int = doc(42, "Seed for initialisation, data order and dropout.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = doc(
        "auto",
        "Autocast precision of training and of teacher scoring: 'auto' (bfloat16 where the CPU or GPU "
        "computes it natively: AVX512-BF16 or AMX CPUs, bf16-capable GPUs; else float32; a CPU whose bfloat16 "
        "is timed slower than float32 gets a log line saying so), 'no' (float32), "
        "'bf16', or 'fp16' (GPU only). Weights and optimizer state stay float32; evaluation runs in float32.",
    )
    dropout: float | None = doc(
        0.0,
        "Dropout probability while training (every dropout layer of the model); empty keeps the model's "
        "own (0.1 for BERT). 0 by default for students: the teacher's soft targets regularise, and dropout "
        "costs a large share of a small student's step (docs/measurements.md).",
    )
    threads: int | None = doc(None, "CPU threads for torch; empty keeps torch's default.")
    progress: bool = doc(True, "Show a progress bar with loss, rate and ETA.")
    report_to: tuple[str, ...] = doc(
        (),
        "Experiment trackers that get every metrics.jsonl line, the run config and the final summary: any "
        "tracker accelerate knows, e.g. [tensorboard, mlflow] (also wandb, comet_ml, aim, clearml, dvclive, "
        "swanlab, trackio). Local by default, in <output_dir>/tracking; TensorBoard and MLflow install with "
        "pip install 'textdistill[tracking]'. Main process only. Empty: no tracker.",
    )
    checkpoint_every: int = doc(
        500,
        "Write a resumable training checkpoint every N optimizer steps (also at the end and on Ctrl-C); "
        "0 writes only those two. `distill --resume` continues from the newest one.",
    )
    keep_checkpoints: int = doc(2, "Keep the newest N training checkpoints; older ones are deleted.")
    deterministic: bool = doc(
        False,
        "Use only deterministic kernels (torch.use_deterministic_algorithms), so a resumed GPU run repeats an "
        "uninterrupted one bit for bit; slower on GPU. CPU runs are deterministic without it.",
    )
