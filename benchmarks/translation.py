"""Translation distillation (issue 4, measurement 2): an EN->ES encoder-decoder teacher trained here on the
built-in Bible verse pairs, distilled into a student with 1 of its 6 decoder layers by token-level KD and by
sequence-level KD (the teacher's greedy translations as targets), against the same student without a teacher.

Each variant is one `textdistill distill` run of textdistill/configs/translation_seq2seq.yaml; the teacher is trained
once (cached) and shared. Token-level KD reads the teacher's top-32 log-probs from the on-disk cache and
sequence-level KD reads its cached translations, so after the first seed no student runs the teacher and
several seeds fit (a top-k KD step still costs more than a no-teacher step, for its vocabulary-chunked loss). Reported per seed and as mean +- sd over seeds: chrF and BLEU of
greedy outputs on the test verses, perplexity, and the greedy decoding speed-up at batch 1; then the issue's
target: the best student (by mean chrF) keeps >= 95% of the teacher's chrF at >= 2.5x speed-up, and beats the
no-teacher student on the mean and on every seed (each seed compares students with the same initialisation and
data order).

    python benchmarks/translation.py --smoke                          # tiny sizes: a few minutes on a CPU
    python benchmarks/translation.py --cpu --threads 2 --seeds 1 2    # about 100 minutes on a 2-core CPU
    python benchmarks/translation.py                                  # the full measurement (GPU)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from generation_variants import elapsed, run_variants

CONFIG = Path(__file__).resolve().parents[1] / "textdistill" / "configs" / "translation_seq2seq.yaml"
VARIANTS = {
    "token-level KD (top-32 teacher)": {"generation.sequence_kd": "off", "generation.with_references": False,
                                        "generation.topk": 32},
    "sequence-level KD (teacher's greedy outputs)": {"generation.sequence_kd": "greedy",
                                                     "generation.with_references": False,
                                                     "loss.alpha": 1.0, "loss.beta": 0.0},
}
SMOKE = {"data.max_train_examples": 300, "data.max_eval_examples": 16, "data.max_length": 48,
         "data.max_target_length": 48, "generation.max_new_tokens": 24, "report.latency_examples": 4,
         "teacher.architecture.num_layers": 3, "teacher.architecture.hidden_size": 64, "teacher.architecture.num_heads": 2,
         "teacher.architecture.intermediate_size": 128, "teacher.architecture.vocab_size": 600, "student.layers": [2],
         "teacher.finetune.max_steps": 400, "teacher.finetune.epochs": 30.0, "teacher.finetune.batch_size": 16, "teacher.finetune.learning_rate": 2.0e-3,
         "teacher.finetune.checkpoint_every": 0, "teacher.finetune.progress": False,
         "train.max_steps": 150, "train.epochs": 10.0, "train.batch_size": 16, "train.learning_rate": 2.0e-3, "train.checkpoint_every": 0,
         "teacher.batch_size": 32}

# The config's teacher shape trained for 5,000 steps of 32 pairs (5.8 epochs; 66 min on a 2-core CPU, once, cached),
# students fine-tuned from its layers for 2,000 steps (2.3 epochs; 11 to 18 min each), 300 test verses, 64 tokens.
CPU = {"data.max_length": 64, "data.max_target_length": 64, "generation.max_new_tokens": 64,
       "data.max_eval_examples": 300, "report.latency_examples": 20,
       "teacher.finetune.max_steps": 5000, "teacher.finetune.batch_size": 32, "teacher.finetune.learning_rate": 1.0e-3,
       "teacher.finetune.warmup_ratio": 0.05, "teacher.finetune.checkpoint_every": 200,
       "train.max_steps": 2000, "train.batch_size": 32, "train.learning_rate": 5.0e-4, "train.checkpoint_every": 100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a few minutes on a CPU)")
    parser.add_argument("--cpu", action="store_true", help="sizes for a 2-core CPU (41 to 56 minutes a seed; the first also fills the caches)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="train.seed of the students, one run each")
    parser.add_argument("--table-only", action="store_true", help="tabulate the runs already in --output")
    parser.add_argument("--output", default="runs/bench_translation", help="folder of the runs and results.json")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    out = Path(args.output)
    base = {**(SMOKE if args.smoke else CPU if args.cpu else {}), "train.progress": not args.smoke}
    if args.threads:
        base["train.threads"] = args.threads
    started = time.perf_counter()
    per_seed = {seed: run_variants(CONFIG, VARIANTS, {**base, "train.seed": seed}, out / f"seed{seed}", "student: ",
                                   train=not args.table_only)
                for seed in args.seeds}
    rows = {name: mean_row([runs[name] for runs in per_seed.values()]) for name in per_seed[args.seeds[0]]}
    teacher = rows["teacher"]
    table = ["| model | chrF | % of teacher chrF | BLEU | perplexity | agreement | parameters | greedy speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        share = 100 * r["chrf"] / teacher["chrf"] if teacher["chrf"] else float("nan")
        spread = f" +- {r['chrf_sd']:.2f}" if len(args.seeds) > 1 else ""
        agreement = f"{100 * r['token_agreement']:.1f}%" if "token_agreement" in r else "-"
        table.append(f"| {name} | {r['chrf']:.2f}{spread} | {share:.1f}% | {r['bleu']:.2f} | {r['perplexity']:.2f} | "
                     f"{agreement} | {r['parameters'] / 1e6:.2f}M | {r['speed_up']:.2f}x |")
    seeds_table = ["| seed | " + " | ".join(per_seed[args.seeds[0]]) + " |", "|---" * (len(rows) + 1) + "|"]
    for seed, runs in per_seed.items():
        seeds_table.append(f"| {seed} | " + " | ".join(f"{r['chrf']:.2f}" for r in runs.values()) + " |")
    students = {k: r for k, r in rows.items() if k.startswith("student")}
    best_name, best = max(students.items(), key=lambda kv: kv[1]["chrf"])
    baseline = rows["no-teacher student"]
    target = {"seeds": args.seeds, "best_student": best_name,
              "chrf_share_of_teacher": best["chrf"] / teacher["chrf"] if teacher["chrf"] else None,
              "greedy_speed_up": best["speed_up"],
              "beats_no_teacher": best["chrf"] > baseline["chrf"],
              # seeds on which the best student's chrF is above the no-teacher student's of the same seed
              "seeds_beating_no_teacher": sum(runs[best_name]["chrf"] > runs["no-teacher student"]["chrf"]
                                              for runs in per_seed.values()),
              # a teacher that writes one sentence for every source is matched by a student that copies it
              "teacher_distinct_outputs": teacher.get("distinct_outputs")}
    target["met"] = bool(target["chrf_share_of_teacher"] and target["chrf_share_of_teacher"] >= 0.95
                         and target["greedy_speed_up"] >= 2.5 and target["beats_no_teacher"]
                         and target["seeds_beating_no_teacher"] == len(args.seeds)
                         and (target["teacher_distinct_outputs"] or 0) >= 0.5)
    print("\n".join(table))
    print("\nchrF per seed:\n" + "\n".join(seeds_table))
    print("\ntarget (mean chrF >= 95% of the teacher's, >= 2.5x greedy speed-up, beats no-teacher on the mean and on "
          "every seed, a teacher whose outputs are at least half distinct):", json.dumps(target))
    result = {"table_only": args.table_only, "smoke": args.smoke, "cpu": args.cpu,
              "seconds": elapsed(out, started, args.table_only), "target": target, "results": rows,
              "per_seed": {seed: {k: strip(r) for k, r in runs.items()} for seed, runs in per_seed.items()}}
    (out / "results.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\nruns and results.json in {out} ({result['seconds']:.0f} s)")


def strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "examples"}


def mean_row(rows: list[dict]) -> dict:
    """The numeric fields of `rows` (one per seed) averaged, with `chrf_sd` the sample sd of chrF (0 for one)."""
    numeric = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    mean = {k: statistics.fmean(r[k] for r in rows) for k in numeric}
    mean["chrf_sd"] = statistics.stdev(r["chrf"] for r in rows) if len(rows) > 1 else 0.0
    return mean


if __name__ == "__main__":
    main()
