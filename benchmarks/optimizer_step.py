"""Training-step time with AdamW's fused kernel against its default multi-tensor ('foreach') kernel.

One process, the two variants interleaved (round-robin) so that a noisy machine slows them alike; prints
the median time of a whole training step (forward, backward, optimizer step) and of the optimizer step
alone, and their ratios. Two workloads: the built-in MiniLM teacher's fine-tune (6 layers, hidden 384,
vocabulary 30,522, every weight trained, the model's dropout) and the demo's student (2 layers, hidden 256,
a 14,000-token task vocabulary, dropout 0). Random weights: speed does not depend on them. Batches of 32
sequences of `--length` tokens (Rotten Tomatoes' reviews average about 30 under MiniLM's tokenizer).

    .venv/bin/python benchmarks/optimizer_step.py --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

from textdistill.config import TrainConfig
from textdistill.training.loop import _optimizer

WORKLOADS = {  # name: (layers, hidden, heads, vocab, dropout)
    "teacher fine-tune (MiniLM)": (6, 384, 12, 30522, 0.1),
    "student (demo recipe)": (2, 256, 4, 14000, 0.0),
}


def model(layers: int, hidden: int, heads: int, vocab: int, dropout: float) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, num_labels=2, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout)).train()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batches of 32 x {args.length} tokens, "
          f"{args.rounds} rounds")
    for name, shape in WORKLOADS.items():
        vocab = shape[3]
        ids = torch.randint(1000, vocab, (32, args.length), generator=torch.Generator().manual_seed(1))
        labels = torch.randint(0, 2, (32,))
        variants = {}
        for fused in (False, True):
            m = model(*shape)
            variants["fused" if fused else "foreach"] = (m, _optimizer([m], TrainConfig(learning_rate=5e-5),
                                                                        fused=fused))
        step = {k: [] for k in variants}
        update = {k: [] for k in variants}
        for r in range(args.rounds + 2):  # two warm-up rounds
            for k, (m, opt) in sorted(variants.items(), reverse=r % 2 == 1):  # alternate which goes first
                opt.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                m(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
                t1 = time.perf_counter()
                opt.step()
                t2 = time.perf_counter()
                if r >= 2:
                    step[k].append(t2 - t0)
                    update[k].append(t2 - t1)
        med = {k: (statistics.median(step[k]) * 1e3, statistics.median(update[k]) * 1e3) for k in variants}
        params = sum(p.numel() for p in variants["fused"][0].parameters())
        print(f"\n{name}: {params / 1e6:.1f}M parameters")
        for k, (s, u) in med.items():
            print(f"  {k:8s} step {s:7.1f} ms   optimizer {u:6.1f} ms")
        print(f"  fused / foreach: step {med['foreach'][0] / med['fused'][0]:.2f}x faster, "
              f"optimizer {med['foreach'][1] / med['fused'][1]:.2f}x faster")


if __name__ == "__main__":
    main()
