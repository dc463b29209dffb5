"""Peak memory and speed of the top-k KD loss against the full-vocabulary KL, at two vocabulary sizes.

The teacher side of the top-k loss is k + 1 numbers per position whatever the vocabulary; the full KL
needs the teacher's `[N, V]` logits. Also measures the accuracy cost of top-k (top-k KL / full KL) for a
few k, and tokens per second of the teacher-scoring step (`topk_with_leftover` on the teacher's logits).

Second table: forward + backward of the top-k loss from the student's last hidden states, through its
LM head (`[V, D]`, D = 576 as in SmolLM2), once with the `[N, V]` logits materialised
(`forward_kl_topk(hidden @ W.T, ...)`) and once vocabulary-chunked (`forward_kl_topk_from_hidden`),
at each vocabulary size; then the same for the whole loss of the cached top-k objective (label
cross-entropy + top-k KL, with `cross_entropy_from_hidden` on the chunked path). The head's weight is frozen here so the peak counts the loss's activations,
not the parameter-sized gradient of the head (which any trained head has).

    python benchmarks/topk_memory.py            # defaults finish in well under a minute on 2 cores
    python benchmarks/topk_memory.py --positions 4096 --vocabs 32000 128000
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from textdistill.losses import (cross_entropy, cross_entropy_from_hidden, forward_kl, forward_kl_topk,
                               forward_kl_topk_from_hidden, topk_with_leftover)


def teacher_bytes(obj) -> int:
    tensors = obj if isinstance(obj, tuple) else (obj,)
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_step_bytes(fn) -> int:
    """Peak bytes allocated by torch on CPU during `fn()` (via the CPU allocator's profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # running total of allocations minus frees, in time order. Each op's *self* bytes only: an op's
    # `cpu_memory_usage` includes its children's, so summing it counts nested allocations twice.
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    running = peak = 0
    for e in events:
        running += e.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=1024, help="tokens per step (batch x sequence)")
    ap.add_argument("--vocabs", type=int, nargs="+", default=[8000, 64000])
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=576, help="student hidden size for the second table")
    ap.add_argument("--vocab_chunk", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"positions={args.positions} threads={args.threads} (medians of {args.repeats})")
    print(f"{'V':>7} {'loss':>12} {'teacher MB':>11} {'peak MB':>9} {'ms':>8} {'KL/full':>8}")
    for vocab in args.vocabs:
        # a peaked teacher, as a trained LM is; the student a noisy copy
        teacher = torch.randn(args.positions, vocab, generator=g) * 4
        student = teacher + torch.randn(args.positions, vocab, generator=g) * 2
        full_value = forward_kl(student, teacher).mean().item()
        variants = {"full KL": (lambda: forward_kl(student, teacher), teacher)}
        for k in args.ks:
            triple = topk_with_leftover(teacher, k)
            variants[f"top-{k} KL"] = ((lambda tr=triple: forward_kl_topk(student, *tr)), triple)
        for name, (fn, target) in variants.items():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                value = fn().mean().item()
                times.append(time.perf_counter() - t0)
            peak = peak_step_bytes(fn)
            print(f"{vocab:>7} {name:>12} {teacher_bytes(target) / 2**20:>11.2f} {peak / 2**20:>9.1f} "
                  f"{statistics.median(times) * 1e3:>8.1f} {value / full_value:>8.3f}")
        for k in args.ks[:1]:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                topk_with_leftover(teacher, k)
                times.append(time.perf_counter() - t0)
            print(f"{vocab:>7} scoring top-{k}: {args.positions / statistics.median(times):,.0f} tokens/s "
                  "(top-k extraction only, teacher forward not included)")
        del teacher, student
    print(f"\nforward + backward from hidden states (D={args.hidden}, top-{args.ks[0]}, vocab_chunk={args.vocab_chunk}):")
    print(f"{'V':>7} {'path':>22} {'peak MB':>9} {'ms':>8}")
    for vocab in args.vocabs:
        hidden = torch.randn(args.positions, args.hidden, generator=g, requires_grad=True)
        weight = torch.randn(vocab, args.hidden, generator=g) / args.hidden**0.5
        triple = topk_with_leftover(torch.randn(args.positions, vocab, generator=g) * 4, args.ks[0])
        labels = torch.randint(0, vocab, (args.positions,), generator=g)
        chunk = args.vocab_chunk

        def whole_materialised():  # the objective's two terms, as cached_topk_objective's logits path
            logits = hidden @ weight.T
            (cross_entropy(logits, labels).sum() + forward_kl_topk(logits, *triple).sum()).backward()

        def whole_chunked():  # ... and as its hidden-state path
            (cross_entropy_from_hidden(hidden, weight, labels, chunk).sum()
             + forward_kl_topk_from_hidden(hidden, weight, *triple, vocab_chunk=chunk).sum()).backward()

        paths = {
            "logits materialised": lambda: forward_kl_topk(hidden @ weight.T, *triple).sum().backward(),
            "vocab-chunked": lambda: forward_kl_topk_from_hidden(hidden, weight, *triple,
                                                                 vocab_chunk=chunk).sum().backward(),
            "CE + KL materialised": whole_materialised,
            "CE + KL vocab-chunked": whole_chunked,
        }
        for name, fn in paths.items():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            peak = peak_step_bytes(fn)
            print(f"{vocab:>7} {name:>22} {peak / 2**20:>9.1f} {statistics.median(times) * 1e3:>8.1f}")
        del hidden, weight, triple, labels


if __name__ == "__main__":
    main()
