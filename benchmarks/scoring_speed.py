"""Teacher scoring on the CPU: float32 vs bfloat16 autocast vs ONNX Runtime, and tokens/s by batch size.

    python benchmarks/scoring_speed.py [--rounds 3] [--forward-only]

A MiniLM-shaped teacher (6 layers, hidden 384, random weights: speed does not depend on them), 2 threads:
1. forward of 32 x 128 tokens in float32, under bfloat16 autocast, with bfloat16 weights, and in ONNX
   Runtime float32 (the export `cached_teacher_logits` scores with) and int8 (the quantised copy
   `teacher.scoring: int8` scores with; medians over the rounds, interleaved), with the largest |logit
   difference| from float32 and the largest |logit| (the scale);
2. `predict_logits` under bf16 autocast at several batch sizes, for texts of 128 and of 32 tokens: the
   measurement behind the 4,096-token cap on inference batches (`data/batching.py`).
"""

from __future__ import annotations

import argparse
import atexit
import copy
import os
import shutil
import statistics
import tempfile
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

from textdistill.data.labelled import Encoded
from textdistill.evaluation.predict import predict_logits
from textdistill.models.onnx_teacher import exported_teacher, open_session, quantised_teacher


def synthetic(n: int, length: int) -> Encoded:
    ids = torch.randint(1000, 30000, (n, length), generator=torch.Generator().manual_seed(0))
    return Encoded(input_ids=ids.tolist(), token_type_ids=None, labels=torch.zeros(n, dtype=torch.long),
                   lengths=[length] * n, pad_id=0)


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--forward-only", action="store_true", help="skip the batch-size sweep (part 2)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                                                       num_attention_heads=12, intermediate_size=1536)).eval()
    bf16_weights = copy.deepcopy(teacher).to(torch.bfloat16)
    x = {"input_ids": torch.randint(1000, 30000, (32, 128)), "attention_mask": torch.ones(32, 128, dtype=torch.long)}

    def autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return teacher(**x).logits.float()

    work = tempfile.mkdtemp(prefix="scoring_speed_")
    atexit.register(shutil.rmtree, work, True)  # the export made here, whichever way main returns
    os.environ["TEXTDISTILL_CACHE"] = work
    path = exported_teacher(teacher, "scoring-speed")[0]
    session = open_session(path)
    int8 = open_session(quantised_teacher(path))  # teacher.scoring: int8
    feed = {"input_ids": x["input_ids"].numpy(), "attention_mask": x["attention_mask"].numpy(),
            "token_type_ids": torch.zeros_like(x["input_ids"]).numpy()}
    variants = {"float32": lambda: teacher(**x).logits, "bf16 autocast": autocast,
                "bf16 weights": lambda: bf16_weights(**x).logits.float(),
                "onnxruntime fp32": lambda: torch.from_numpy(session.run(["logits"], feed)[0]),
                "onnxruntime int8": lambda: torch.from_numpy(int8.run(["logits"], feed)[0])}
    times = {k: [] for k in variants}
    for f in variants.values():
        f()
    for _ in range(args.rounds):
        for k, f in variants.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    reference = variants["float32"]()
    print(f"forward, 32 x 128 tokens (largest |float32 logit| {reference.abs().max().item():.4f}):")
    for k, f in variants.items():
        diff = (f() - reference).abs().max().item()
        print(f"  {k:16s} {statistics.median(times[k]) * 1e3:7.1f} ms   max |logit - float32| {diff:.2e}   "
              f"{statistics.median(times['float32']) / statistics.median(times[k]):.2f}x float32")
    if args.forward_only:
        return

    print("predict_logits under bf16 autocast (no token cap), tokens/s:")
    for length, sizes in ((128, (16, 32, 64, 128)), (32, (32, 64, 128, 256))):
        data = synthetic(512, length)
        predict_logits(teacher, data, 32, precision="bf16")
        for size in sizes:
            t0 = time.perf_counter()
            predict_logits(teacher, data, size, precision="bf16", max_tokens=None)
            rate = len(data) * length / (time.perf_counter() - t0)
            print(f"  {length:4d} tokens per text, {size:4d} texts per batch ({size * length:6,d} tokens): {rate:8,.0f}")


if __name__ == "__main__":
    main()
