"""Training-loop speed: textdistill against a plain loop, TextBrewer, and the student trained alone.

One process, one workload, the variants run interleaved (round-robin, a fresh student copy each time)
so that a noisy machine slows them alike; each prints the median samples/s over the rounds and its
ratio to the plain loop. The workload is the issue's: a MiniLM-shaped teacher (6 layers, hidden 384,
12 heads, vocab 30,522, random weights: speed does not depend on them), a 2-layer hidden-128 student,
batches of 32 sequences of 128 tokens, logit KD (0.5 CE + 0.5 T^2 KL, T = 2), AdamW.

Variants:
- plain: the usual hand-written loop, the teacher's forward at every step, float32, model defaults;
- textbrewer: TextBrewer's GeneralDistiller (teacher every step);
- textbrewer cached: TextBrewer's BasicDistiller with `is_caching_logits=True`; its first epoch
  (caching pass + training) and its steady-state epoch (the second) are timed apart;
- textdistill first epoch: teacher scoring through textdistill's cross-run cache from empty (what a
  run with nothing cached pays) plus one epoch of `train`, once with each scoring backend: PyTorch
  (float32, or bf16 autocast where native) and ONNX Runtime float32 (the teacher's export is made once
  before the rounds, as a run finds it cached after its first; its one-off time is printed; opening the
  session and checking it against PyTorch is timed), and ONNX Runtime with int8 weights (`teacher.scoring:
  int8`; its quantised copy is made with the export). The ratio against the target is the one of the
  backend `cached_teacher_logits` picks by default ('auto'), then the int8 one's;
- textdistill steady: one epoch of `train` with the teacher's logits from the cache (every later epoch,
  and every later run on the same teacher and data);
- student alone: the same `train` with labels only, no teacher at all: the limit.
textdistill runs with its defaults (bf16 autocast where native, frozen word embeddings, dropout 0);
`--precision no` makes it train and score in float32, as it does on a CPU without native bfloat16.
A CPU without native bfloat16 is approximated for PyTorch by

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/loop_speed.py --precision no

ONNX Runtime has no such switch: its kernels still use what the CPU has (AVX-512 on such a machine), so
there its ratio is better than it would be on a real AVX2-only CPU.

Also measured: float32 and bfloat16 matmul throughput (2048^3) and the share of that ceiling the
steady-state step reaches (FLOPs of one step counted by torch's FlopCounterMode). The bfloat16 ceiling
is measured only where the step runs in bfloat16 (emulated bf16 is no ceiling); elsewhere it reads
"not available".

TextBrewer is a peer, never a dependency: install it into a folder of its own and point to it:

    pip install --target .bench-env --no-deps textbrewer==0.2.1.post1 && pip install --target .bench-env tensorboard
    python benchmarks/loop_speed.py --peers .bench-env
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

from textdistill.config import LossConfig, TrainConfig
from textdistill.data.labelled import Encoded
from textdistill.models.onnx_teacher import exported_teacher, quantised_teacher, scoring_backend
from textdistill.tasks.classification import cached_teacher_logits
from textdistill.training.loop import train
from textdistill.training.example_objectives import classification_objective
from textdistill.training.objectives import label_objective
from textdistill.precision import resolve_precision

T, ALPHA, BETA = 2.0, 0.5, 0.5


def bert(layers: int, hidden: int, heads: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=4 * hidden, num_labels=2)
    return BertForSequenceClassification(config)


def synthetic(n: int, length: int, seed: int) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (n, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    return Encoded(input_ids=ids.tolist(), token_type_ids=None, labels=torch.randint(0, 2, (n,), generator=g),
                   lengths=[length] * n, pad_id=0)


def kd_loss(student_logits, teacher_logits, labels):
    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / T, -1), F.log_softmax(teacher_logits / T, -1),
                  log_target=True, reduction="batchmean")  # KL(teacher || student)
    return ALPHA * ce + BETA * T * T * kl


def plain_loop(teacher, student, data: Encoded, batch_size: int) -> float:
    """The loop most projects start with: teacher forward every step, float32, model defaults."""
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    student.train()
    start = time.perf_counter()
    for i in range(0, len(data), batch_size):
        batch = data.collate(list(range(i, min(i + batch_size, len(data)))))
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with torch.no_grad():
            teacher_logits = teacher(**inputs).logits
        loss = kd_loss(student(**inputs).logits, teacher_logits, batch["targets"])
        loss.backward()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - start


def textbrewer_run(tb, teacher, student, data: Encoded, batch_size: int, cached: bool, out: Path) -> list[float]:
    """Seconds of each epoch of a TextBrewer run (two epochs when cached: caching + training, then training)."""
    batches = [data.collate(list(range(i, min(i + batch_size, len(data))))) for i in range(0, len(data), batch_size)]
    batches = [{"input_ids": b["input_ids"], "attention_mask": b["attention_mask"], "labels": b["targets"]}
               for b in batches]

    def adaptor(batch, outputs):
        return {"logits": outputs.logits, "losses": [outputs.loss]}

    train_cfg = tb.TrainingConfig(device="cpu", output_dir=str(out), log_dir=None)
    distill_cfg = tb.DistillationConfig(temperature=T, hard_label_weight=ALPHA, kd_loss_weight=BETA * T * T,
                                        kd_loss_type="ce", is_caching_logits=cached)
    cls = tb.BasicDistiller if cached else tb.GeneralDistiller
    distiller = cls(train_config=train_cfg, distill_config=distill_cfg, model_T=teacher, model_S=student,
                    adaptor_T=adaptor, adaptor_S=adaptor)
    marks = [time.perf_counter()]
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    distiller.train(opt, batches, num_epochs=2 if cached else 1,
                    callback=lambda model, step: marks.append(time.perf_counter()))
    return [b - a for a, b in zip(marks, marks[1:])]


def textdistill_epoch(student, data: Encoded, batch_size: int, objective, work: Path, precision: str) -> float:
    run_dir = Path(tempfile.mkdtemp(dir=work))  # a fresh run folder: nothing to resume from
    cfg = TrainConfig(epochs=1.0, batch_size=batch_size, learning_rate=1e-4, progress=False, checkpoint_every=0,
                      warmup_ratio=0.0, mixed_precision=precision)
    start = time.perf_counter()
    train(student, data, objective, cfg, name="bench", run_dir=run_dir)
    seconds = time.perf_counter() - start
    shutil.rmtree(run_dir)
    return seconds


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def share_of(achieved: float, ceiling: float | None, name: str) -> str:
    """`achieved` as a share of the `name` ceiling; one that is missing, zero or not finite is not available."""
    if ceiling is None or not math.isfinite(ceiling) or ceiling <= 0:
        return f"the {name} ceiling not available"
    return f"{achieved / ceiling:.0%} of the {name} ceiling"


def step_flops(student, data: Encoded, batch_size: int) -> int:
    """Matmul FLOPs of one textdistill training step (forward + backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(student).train()
    model.get_input_embeddings().weight.requires_grad_(False)
    batch = data.collate(list(range(batch_size)))
    objective = classification_objective(LossConfig())
    with FlopCounterMode(display=False) as counter:
        sum(objective(model, batch, 0.0).values()).backward()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=12, help="batches of 32 per epoch")
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", default=None, help="folder holding TextBrewer (pip --target); omit to skip it")
    ap.add_argument("--precision", default="auto", choices=["auto", "no", "bf16"],
                    help="textdistill's train.mixed_precision ('no': float32, as on a CPU without native bf16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batch_size = 32
    tb = None
    if args.peers:
        sys.path.insert(0, str(Path(args.peers).resolve()))
        import textbrewer as tb  # noqa: PLC0415 (a peer, imported only when asked for)
    work = Path(tempfile.mkdtemp(prefix="loop_speed_"))
    os.environ["TEXTDISTILL_CACHE"] = str(work / "cache")
    teacher = bert(6, 384, 12, seed=0).eval().requires_grad_(False)
    student0 = bert(2, 128, 2, seed=1)
    data = synthetic(args.batches * batch_size, args.length, seed=0)
    n = len(data)
    precision = resolve_precision(args.precision)
    auto_backend = scoring_backend(precision, "cpu")
    print(f"{n} examples x {args.length} tokens, batch {batch_size}, {args.threads} threads, {args.rounds} rounds; "
          f"textdistill precision: {precision}, default scoring backend: {auto_backend}; torch {torch.__version__}; "
          f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')} "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')} "
          f"MKL_ENABLE_INSTRUCTIONS={os.environ.get('MKL_ENABLE_INSTRUCTIONS', '')}")
    start = time.perf_counter()
    quantised_teacher(exported_teacher(teacher, "bench-teacher")[0])
    print(f"one-off ONNX export of the teacher and its int8 copy (cached across runs): "
          f"{time.perf_counter() - start:.1f}s")
    first_names = {"pytorch": f"textdistill, first epoch, PyTorch scoring ({'bf16' if precision == 'bf16' else 'fp32'})",
                   "onnxruntime": "textdistill, first epoch, ONNX Runtime scoring (fp32)",
                   "int8": "textdistill, first epoch, ONNX Runtime scoring (int8)"}
    scoring_times: dict[str, list[float]] = {}

    def td_first(backend: str) -> float:
        shutil.rmtree(work / "cache" / "scores", ignore_errors=True)  # the scores, not the teacher's export
        start = time.perf_counter()
        data.teacher_logits = cached_teacher_logits(teacher, data, 128, "bench-teacher", args.length, precision,
                                                    backend=backend)
        scoring = time.perf_counter() - start
        scoring_times.setdefault(backend, []).append(scoring)
        return scoring + textdistill_epoch(copy.deepcopy(student0), data, batch_size,
                                           classification_objective(LossConfig()), work, precision)

    times: dict[str, list[float]] = {}

    def add(name, seconds):
        times.setdefault(name, []).append(seconds)

    for r in range(args.rounds):
        add("plain loop (teacher every step)", plain_loop(teacher, copy.deepcopy(student0), data, batch_size))
        if tb is not None:
            add("textbrewer GeneralDistiller", textbrewer_run(tb, teacher, copy.deepcopy(student0), data,
                                                              batch_size, False, work / "tb")[0])
            first, steady = textbrewer_run(tb, teacher, copy.deepcopy(student0), data, batch_size, True, work / "tbc")
            add("textbrewer cached, first epoch", first)
            add("textbrewer cached, steady state", steady)
        backends = ("pytorch", "onnxruntime", "int8")
        for backend in (backends if r % 2 == 0 else backends[::-1]):
            add(first_names[backend], td_first(backend))
        add("textdistill, steady state (cached)", textdistill_epoch(copy.deepcopy(student0), data, batch_size,
                                                                   classification_objective(LossConfig()), work,
                                                                   precision))
        add("student alone (no teacher)", textdistill_epoch(copy.deepcopy(student0), data, batch_size,
                                                            label_objective(), work, precision))
        print(f"round {r + 1}: " + ", ".join(f"{k.split(' (')[0]} {v[-1]:.1f}s" for k, v in times.items()), flush=True)

    rate = {k: n / statistics.median(v) for k, v in times.items()}
    plain = rate["plain loop (teacher every step)"]
    print(f"\n{'variant':54s} {'samples/s':>10s} {'x plain':>8s}")
    for k, v in rate.items():
        print(f"{k:54s} {v:10.1f} {v / plain:8.2f}")
    steady = rate["textdistill, steady state (cached)"]
    print("\nratios (targets in parentheses):")
    print(f"  textdistill steady / plain loop           {steady / plain:6.2f}  (>= 8)")
    if tb is not None:
        print(f"  textdistill steady / textbrewer cached    {steady / rate['textbrewer cached, steady state']:6.2f}  (>= 1.5)")
    print(f"  textdistill first epoch / plain loop      {rate[first_names[auto_backend]] / plain:6.2f}  (>= 2; "
          f"{auto_backend} scoring, the default here)")
    other = "pytorch" if auto_backend == "onnxruntime" else "onnxruntime"
    print(f"  the same with {other} scoring{' ' * (15 - len(other))}{rate[first_names[other]] / plain:6.2f}")
    print(f"  the same with int8 scoring (teacher.scoring) {rate[first_names['int8']] / plain:6.2f}  (>= 2)")
    print(f"  textdistill steady / student alone        {steady / rate['student alone (no teacher)']:6.2f}  (>= 0.9)")
    scoring = {k: statistics.median(v) for k, v in scoring_times.items()}
    print(f"\nteacher scoring alone (median s): PyTorch {scoring['pytorch']:.2f}, ONNX Runtime {scoring['onnxruntime']:.2f} "
          f"({scoring['pytorch'] / scoring['onnxruntime']:.2f}x), ONNX Runtime int8 {scoring['int8']:.2f} "
          f"({scoring['pytorch'] / scoring['int8']:.2f}x)")
    flops = step_flops(student0, data, batch_size)
    fp32 = matmul_gflops(torch.float32)
    bf16 = matmul_gflops(torch.bfloat16) if precision == "bf16" else None  # emulated bf16 is no ceiling
    achieved = flops * steady / batch_size / 1e9
    print(f"\nmatmul ceiling (2048^3): float32 {fp32:.0f} GFLOP/s, bfloat16 "
          + (f"{bf16:.0f} GFLOP/s" if bf16 else "not available (the step runs in float32)"))
    print(f"steady-state step: {flops / 1e9:.1f} GFLOP per batch of {batch_size}, {achieved:.1f} GFLOP/s = "
          f"{share_of(achieved, fp32, 'float32')}, {share_of(achieved, bf16, 'bfloat16')}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
