"""Greedy decoding speed of a finished generation run, measured again on its own: the run's teacher, student
and no-teacher student at batch 1 on its test prompts, `--rounds` passes, the models interleaved within
each pass (as in the run's report). Prints tokens/s per round, each round's speed-up over the teacher, and
their median.

A run's own speed-up is one pass taken right after training; on a shared 2-core machine a busy moment
slows the small student's per-step overheads more than the teacher's, so one pass can land well off the
median. Run this on a quiet machine to see the spread.

    python benchmarks/generation_speed.py runs/bench_translation_seeds/seed2/variant0 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from textdistill.config import load_config
from textdistill.data.pairs import encode_pairs, load_generation_data
from textdistill.evaluation.generative import generation_speed
from textdistill.models.loading import load_generation_model
from textdistill.models.loading import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished `textdistill distill` run folder of a generation task")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=None, help="test prompts per round (default: the run's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cfg = load_config(run / "config.yaml", {})
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    g, task = cfg.generation, cfg.task
    teacher_dir = Path(summary["teacher"]["path"])
    tokenizer = load_tokenizer(teacher_dir, "teacher")
    models = {"teacher": load_generation_model(teacher_dir, task, "teacher")}
    for name in ("student", "baseline"):
        if (run / name).is_dir():
            models[name] = load_generation_model(run / name, task, name)
    start_id = getattr(models["teacher"].config, "decoder_start_token_id", None)
    test = encode_pairs(tokenizer, load_generation_data(g).test, task, g, start_id)
    prompts = args.prompts or g.speed_prompts
    rounds = []
    for r in range(args.rounds):
        speed = generation_speed(models, test, g.max_new_tokens, prompts, g.on_policy_prompt_tokens)
        rounds.append({name: s["tokens_per_s"] for name, s in speed.items()})
        print(f"round {r + 1}: " + ", ".join(f"{name} {tps:.1f} tok/s" for name, tps in rounds[-1].items())
              + " | speed-up " + ", ".join(f"{name} {tps / rounds[-1]['teacher']:.2f}x"
                                           for name, tps in rounds[-1].items() if name != "teacher"))
    medians = {name: statistics.median(rd[name] / rd["teacher"] for rd in rounds) for name in models if name != "teacher"}
    print(f"median speed-up over {args.rounds} rounds of {prompts} prompts x {g.max_new_tokens} new tokens, "
          f"batch 1, {args.threads} threads: " + ", ".join(f"{name} {v:.2f}x" for name, v in medians.items()))


if __name__ == "__main__":
    main()
