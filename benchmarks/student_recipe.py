"""The default student recipe on real data, over seeds, with an ablation of its methods.

    python benchmarks/student_recipe.py --config textdistill/configs/rotten_tomatoes.yaml --seeds 1 2 3
    python benchmarks/student_recipe.py --config textdistill/configs/bbc_news.yaml --seeds 1 2 3
    python benchmarks/student_recipe.py --config textdistill/configs/rotten_tomatoes.yaml --seeds 1 --ablation

Each run is `textdistill distill --config CONFIG --train.seed S` in a fresh process (the teacher is
fine-tuned once and cached; the data split is fixed by `data.split_seed`, so every seed is tested on the
same examples). Prints, per seed and as mean and spread (min to max): teacher, student and no-teacher
baseline accuracy, retention (student / teacher), student minus baseline, parameter share, size on disk
and batch-1 CPU speed-up; the bars of the issue are printed beside the values, never asserted.

With `--ablation`, the recipe is rebuilt one method at a time (each row adds to the one above):
logits only (no augmentation, no matching, constant temperature 2, no confidence weighting),
+ intermediate layers (hidden-state MSE on the uniform layer map), + augmentation (teacher-labelled token
variants), + schedules (temperature 4 -> 1 linear, soft term weighted by the teacher's confidence): the
last row is the default recipe itself, and reuses its runs. The student's construction (layers, width,
vocabulary) and training budget are the config's in every row.

A run whose folder already holds a summary.json of the same command is reused, not repeated
(`--fresh` repeats it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONSTANT = ["--loss.schedule", "constant", "--loss.temperature", "2", "--loss.temperature_end", "2",
            "--loss.soft_weighting", "none"]
ABLATION = {
    "logits only": ["--data.augment_copies", "0", "--loss.hidden_loss", "none", *CONSTANT],
    "+ intermediate layers": ["--data.augment_copies", "0", "--loss.hidden_loss", "mse", *CONSTANT],
    "+ augmentation": ["--data.augment_copies", "1", "--loss.hidden_loss", "mse", *CONSTANT],
    "+ schedules": [],  # the default recipe
}
RECIPE = "default recipe"


def run(config: str, output: Path, flags: list[str], fresh: bool) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "textdistill", "-q", "distill", "--config", config, "--output_dir", str(output),
           "--overwrite", "--train.progress", "false", *flags]
    done = output / "summary.json"
    stamp = output.parent / f"{output.name}.command.json"
    if not fresh and done.is_file() and stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8"))["cmd"] == cmd[1:]:
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        return json.loads(done.read_text(encoding="utf-8"))["results"], previous["seconds"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    stamp.write_text(json.dumps({"cmd": cmd[1:], "seconds": seconds}), encoding="utf-8")
    return json.loads(done.read_text(encoding="utf-8"))["results"], seconds


def measures(r: dict) -> dict[str, float]:
    return {
        "teacher %": 100 * r["teacher"]["accuracy"],
        "student %": 100 * r["student"]["accuracy"],
        "baseline %": 100 * r["baseline"]["accuracy"],
        "retention %": 100 * r["student"]["accuracy"] / r["teacher"]["accuracy"],
        "student - baseline": 100 * (r["student"]["accuracy"] - r["baseline"]["accuracy"]),
        "params % of teacher": 100 * r["student"]["parameters"] / r["teacher"]["parameters"],
        "student MiB": r["student"]["disk_bytes"] / 2**20,
        "batch-1 speed-up": r["teacher"]["latency_p50_ms"] / r["student"]["latency_p50_ms"],
    }


BARS = {"retention %": ">= 98", "params % of teacher": "<= 25", "batch-1 speed-up": ">= 5",
        "student - baseline": "> 0, clear"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--output", type=Path, default=Path("runs/student_recipe"))
    ap.add_argument("--ablation", action="store_true", help="the method-by-method table instead of the recipe")
    ap.add_argument("--fresh", action="store_true", help="repeat runs whose results are already there")
    args, extra = ap.parse_known_args()
    name = Path(args.config).stem
    variants = ABLATION if args.ablation else {RECIPE: []}
    for variant, flags in variants.items():
        rows = []
        for seed in args.seeds:
            label = variant if flags else RECIPE  # the ablation's last row is the recipe itself
            folder = args.output / name / label.replace(" ", "_").replace("+", "plus") / f"seed{seed}"
            results, seconds = run(args.config, folder, [*flags, "--train.seed", str(seed), *extra], args.fresh)
            rows.append(measures(results))
            print(f"{variant} seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items())
                  + f", wall {seconds:.0f} s", flush=True)
        print(f"\n{name}, {variant}, seeds {args.seeds}:")
        for key in rows[0]:
            values = [row[key] for row in rows]
            spread = f"  (min {min(values):.2f}, max {max(values):.2f})" if len(values) > 1 else ""
            bar = f"   bar {BARS[key]}" if key in BARS and not args.ablation else ""
            print(f"  {key:22s} mean {statistics.mean(values):7.2f}{spread}{bar}")
        print(flush=True)


if __name__ == "__main__":
    main()
