"""Top-k teacher targets on a real causal LM: what they cost in accuracy and how fast the teacher scores.

On World English Bible verses with the built-in SmolLM2-135M teacher (or `--teacher DIR`):
- scoring speed: the teacher's forward plus `topk_with_leftover`, in float32 and under bfloat16
  autocast, interleaved over repeats; tokens/s counts real (unpadded) tokens;
- what top-k keeps: the teacher's mean leftover mass (probability outside its k best tokens) and the
  ratio top-k KL / full KL against a student made of a third of the teacher's layers (untrained, so
  far from the teacher: a hard case for the tail), for a few k;
- bf16 vs float32 scoring: agreement of the teacher's top-1 token and the mean |delta log-prob| of the kept ids.

    python benchmarks/lm_topk.py --texts 64 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from textdistill.losses import forward_kl, forward_kl_topk, topk_with_leftover
from textdistill.precision import autocast


def third_of_layers(teacher):
    student = copy.deepcopy(teacher)
    layers = student.model.layers
    keep = list(range(len(layers) - 1, -1, -3))[::-1]  # every third layer, ending with the last
    student.model.layers = torch.nn.ModuleList(layers[i] for i in keep)
    student.config.num_hidden_layers = len(keep)
    for i, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = i
    return student


@torch.inference_mode()
def score(model, batch, precision: str, k: int):
    with autocast(precision, "cpu"):
        logits = model(**batch).logits.float()  # [B, L, V]
    return logits, topk_with_leftover(logits, k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=None, help="causal LM folder; default: the built-in SmolLM2")
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--max_length", type=int, default=64)
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.teacher is None:
        from textdistill.models.builtin_lm import smollm2_path

        args.teacher = str(smollm2_path())
    from textdistill.data.bible import english_verses

    texts = english_verses()[-args.texts:]  # the end of Revelation (nothing is trained here)
    tok = AutoTokenizer.from_pretrained(args.teacher)
    tok.pad_token = tok.pad_token or tok.eos_token
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32).eval()
    student = third_of_layers(teacher).eval()
    batches = [tok(texts[i : i + args.batch_size], return_tensors="pt", padding=True, truncation=True,
                   max_length=args.max_length) for i in range(0, len(texts), args.batch_size)]
    n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    print(f"teacher {args.teacher}: {sum(p.numel() for p in teacher.parameters()) / 1e6:.1f}M parameters, "
          f"{teacher.config.num_hidden_layers} layers; student {student.config.num_hidden_layers} layers; "
          f"{len(texts)} verses, {n_tokens} tokens, {args.threads} threads")

    times = {"no": [], "bf16": []}
    for _ in range(args.repeats):
        for precision in times:
            t0 = time.perf_counter()
            for b in batches:
                score(teacher, b, precision, args.ks[0])
            times[precision].append(time.perf_counter() - t0)
    for precision, ts in times.items():
        print(f"scoring (forward + top-{args.ks[0]}), {'float32' if precision == 'no' else 'bf16 autocast'}: "
              f"{n_tokens / statistics.median(ts):,.0f} tokens/s")

    sums = {k: [0.0, 0.0] for k in args.ks}  # leftover mass, top-k KL
    full_kl, agree, delta, count = 0.0, 0, 0.0, 0
    for b in batches:
        mask = b["attention_mask"].bool()  # [B, L]
        t_logits, _ = score(teacher, b, "no", args.ks[0])
        _, (h_top, h_ids, _) = score(teacher, b, "bf16", args.ks[0])
        with torch.inference_mode():
            s_logits = student(**b).logits.float()
        full_kl += float(forward_kl(s_logits, t_logits)[mask].sum())
        f_top, f_ids, _ = topk_with_leftover(t_logits, args.ks[0])
        agree += int((f_ids[..., 0] == h_ids[..., 0])[mask].sum())
        t_lp = torch.log_softmax(t_logits, -1)
        delta += float((t_lp.gather(-1, h_ids) - h_top).abs().mean(-1)[mask].sum())
        count += int(mask.sum())
        for k in args.ks:
            top, ids, left = topk_with_leftover(t_logits, k)
            sums[k][0] += float(left.exp()[mask].sum())
            sums[k][1] += float(forward_kl_topk(s_logits, top, ids, left)[mask].sum())
    print(f"\nfull KL(teacher || student) per token: {full_kl / count:.3f}")
    print(f"{'k':>5} {'teacher mass outside top-k':>27} {'top-k KL / full KL':>19}")
    for k, (left, kl) in sums.items():
        print(f"{k:>5} {left / count:>27.3f} {kl / full_kl:>19.3f}")
    print(f"\nbf16 vs float32 scoring: top-1 agreement {agree / count:.1%}, "
          f"mean |delta log p| at the kept ids {delta / count:.4f}")


if __name__ == "__main__":
    main()
