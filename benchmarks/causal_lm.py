"""Causal-LM distillation (issue 4, measurement 1): SmolLM2-135M-Instruct into a ~1/3 student on the
English Bible, by forward KL, reverse KL and on-policy KD, against the same student without a teacher.

Each variant is one `textdistill distill` run of textdistill/configs/smollm2_bible.yaml with a few settings changed;
the no-teacher student is trained once (with the first variant) for the same optimizer steps. The table
gives held-out perplexity, token agreement with the teacher (teacher-forced, same argmax next token) and
the greedy-decoding speed-up (batch 1, models interleaved).

    python benchmarks/causal_lm.py --smoke          # tiny sizes: proves the path, a few minutes on a CPU
    python benchmarks/causal_lm.py --cpu --threads 1  # about an hour on a 2-core CPU
    python benchmarks/causal_lm.py                  # the full measurement (GPU or a long CPU run)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from generation_variants import elapsed, run_variants

CONFIG = Path(__file__).resolve().parents[1] / "textdistill" / "configs" / "smollm2_bible.yaml"
VARIANTS = {
    "forward KL": {"loss.soft": "forward_kl"},
    "reverse KL": {"loss.soft": "reverse_kl"},
    "on-policy (GKD, forward KL, half the steps)": {"loss.soft": "forward_kl", "generation.on_policy_fraction": 0.5},
}
SMOKE = {"data.max_train_examples": 24, "data.max_eval_examples": 8, "data.max_length": 32,
         "generation.max_new_tokens": 8, "report.latency_examples": 3, "train.max_steps": 3, "train.batch_size": 4,
         "train.checkpoint_every": 0, "teacher.batch_size": 8}

# About an hour on a 2-core CPU with --threads 1: 300 optimizer steps of 16 verses per variant,
# 200 held-out verses, 10 prompts for the speed measurement.
CPU = {"data.max_train_examples": 4800, "data.max_eval_examples": 200, "report.latency_examples": 10,
       "train.checkpoint_every": 50}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a few minutes on a CPU)")
    parser.add_argument("--cpu", action="store_true", help="sizes for about an hour on a 2-core CPU")
    parser.add_argument("--teacher", default=None, help="a local causal-LM folder instead of the built-in SmolLM2")
    parser.add_argument("--table-only", action="store_true", help="tabulate the runs already in --output")
    parser.add_argument("--output", default="runs/bench_causal_lm", help="folder of the runs and results.json")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    out = Path(args.output)
    base = {**(SMOKE if args.smoke else CPU if args.cpu else {}), "train.progress": not args.smoke}
    if args.teacher:
        base["teacher.path"] = args.teacher
    if args.threads:
        base["train.threads"] = args.threads
    started = time.perf_counter()
    rows = run_variants(CONFIG, VARIANTS, base, out, "KD student: ", train=not args.table_only)
    teacher = rows["teacher"]
    table = ["| model | perplexity | token agreement | parameters | greedy tokens/s | speed-up |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        agree = f"{100 * r['token_agreement']:.1f}%" if "token_agreement" in r else "-"
        table.append(f"| {name} | {r['perplexity']:.2f} | {agree} | {r['parameters'] / 1e6:.1f}M | "
                     f"{r['tokens_per_s']:.1f} | {r['speed_up']:.2f}x |")
    print("\n".join(table))
    result = {"table_only": args.table_only, "smoke": args.smoke, "cpu": args.cpu,
              "seconds": elapsed(out, started, args.table_only),
              "results": {k: {kk: v for kk, v in r.items() if kk != "examples"} for k, r in rows.items()}}
    (out / "results.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\nruns and results.json in {out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
