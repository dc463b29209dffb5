"""The student recipe of a config on real data, over seeds, against its bars; or an ablation of what it is made of.

    python benchmarks/student_recipe.py --config textdistill/configs/rotten_tomatoes.yaml --seeds 1 2 3
    python benchmarks/student_recipe.py --config textdistill/configs/bbc_news.yaml --seeds 1 2 3
    python benchmarks/student_recipe.py --config textdistill/configs/rotten_tomatoes.yaml --seeds 1 --ablation

Each run is `textdistill distill --config CONFIG --train.seed S` in a fresh process (the teacher is
fine-tuned once and cached, its scores of the transfer set too; the data split is fixed by
`data.split_seed`, so every seed is tested on the same examples). Prints, per seed and as mean and spread
(min to max): teacher, student and no-teacher baseline accuracy and macro-F1, retention (student / teacher),
student minus baseline, parameter share, size on disk, batch-1 CPU speed-up, and the wall time of each phase
(teacher fine-tune, or 0 when read from the cache; teacher scoring; student; baseline); the bars are
printed beside the values with whether they are met, never asserted.

With `--ablation`, each row changes one thing of the config's recipe (rows named in ABLATION; extra
flags after the known ones go to every row): the teacher recipe (one fixed epoch, as before early
stopping), the transfer-set size (1, 4, 20 variants per text), the built-in unlabelled text, text written
by the built-in SmolLM2 (`data.generated_texts`), each
augmentation kind alone, and intermediate-layer matching; with wall time per row. A flag already in the
config is overridden by the row's.

A run whose folder already holds a summary.json of the same command is reused, not repeated
(`--fresh` repeats it). `--rows WORD...` runs only the ablation rows whose names contain a word;
`--reuse-baseline` saves the baseline's time in the rows that cannot change it (SAME_BASELINE).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

KINDS = "--data.augment_kinds"
ABLATION = {
    "teacher: one epoch, no early stopping": ["--teacher.finetune.epochs", "1",
                                              "--teacher.finetune.early_stopping_patience", "null"],
    "transfer set: 1 variant per text": ["--data.augment_copies", "1"],
    "transfer set: 4 variants per text": ["--data.augment_copies", "4"],
    "transfer set: 20 variants per text": ["--data.augment_copies", "20"],
    "+ built-in unlabelled text": ["--data.use_builtin_unlabeled", "true"],
    "+ 2,000 texts written by SmolLM2": ["--data.generated_texts", "2000"],
    "kinds: tokens only": [KINDS, "[tokens]"],
    "kinds: neighbours only": [KINDS, "[neighbours]"],
    "kinds: span only": [KINDS, "[span]"],
    "+ hidden-state matching": ["--loss.hidden_loss", "mse"],
}
RECIPE = "recipe"
# Rows whose no-teacher baseline is the recipe's: they change only the teacher-labelled variants or the
# student's loss, and the baseline sees neither (gold labels, the same student, step budget and seed).
# With --reuse-baseline they run without one and report the recipe run's (their "baseline s" is 0).
SAME_BASELINE = {"transfer set: 1 variant per text", "transfer set: 4 variants per text",
                 "transfer set: 20 variants per text", "kinds: tokens only", "kinds: neighbours only",
                 "kinds: span only", "+ hidden-state matching"}
assert SAME_BASELINE <= ABLATION.keys()


def run(config: str, output: Path, flags: list[str], fresh: bool,
        equivalent: list[str] | None = None) -> tuple[dict, float]:
    """The summary of one run and its wall time (read back when the same command already ran, or the command
    of the flags `equivalent`, whose run serves as well: the same row with its own baseline)."""
    def command(f: list[str]) -> list[str]:
        return [sys.executable, "-m", "textdistill", "-q", "distill", "--config", config, "--output_dir", str(output),
                "--overwrite", "--train.progress", "false", *f]

    cmd = command(flags)
    done = output / "summary.json"
    stamp = output.parent / f"{output.name}.command.json"
    if not fresh and done.is_file() and stamp.is_file():
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous["cmd"] in (cmd[1:], command(equivalent)[1:] if equivalent is not None else None):
            return json.loads(done.read_text(encoding="utf-8")), previous["seconds"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    stamp.write_text(json.dumps({"cmd": cmd[1:], "seconds": seconds}), encoding="utf-8")
    return json.loads(done.read_text(encoding="utf-8")), seconds


def measures(summary: dict, seconds: float, recipe: dict | None = None) -> dict[str, float]:
    """The row's numbers; `recipe`: the recipe run of the same seed, whose baseline a row run without one reports."""
    r, runs = summary["results"], summary["runs"]
    if "baseline" not in r:
        r = {**r, "baseline": recipe["results"]["baseline"]}
        runs = {**runs, "baseline": {"seconds": 0.0}}
    teacher_fit = r["teacher"].get("train_seconds", 0.0) if not summary.get("teacher", {}).get("cached") else 0.0
    written = summary.get("written_texts")
    return {
        "teacher %": 100 * r["teacher"]["accuracy"],
        "student %": 100 * r["student"]["accuracy"],
        "baseline %": 100 * r["baseline"]["accuracy"],
        "retention %": 100 * r["student"]["accuracy"] / r["teacher"]["accuracy"],
        "student - baseline": 100 * (r["student"]["accuracy"] - r["baseline"]["accuracy"]),
        "student macro-F1": 100 * r["student"]["macro_f1"],
        "macro-F1 - baseline": 100 * (r["student"]["macro_f1"] - r["baseline"]["macro_f1"]),
        "params % of teacher": 100 * r["student"]["parameters"] / r["teacher"]["parameters"],
        "student MiB": r["student"]["disk_bytes"] / 2**20,
        "batch-1 speed-up": r["teacher"]["latency_p50_ms"] / r["student"]["latency_p50_ms"],
        "teacher fine-tune s": teacher_fit,
        "text writing s": written["seconds"] if written and not written["cached"] else 0.0,
        "teacher scoring s": runs["student"].get("teacher_signal_seconds", 0.0),
        "student s": runs["student"]["seconds"],
        "baseline s": runs["baseline"]["seconds"],
        "wall s": seconds,
    }


# (test on the mean, test on every seed), as text and as a check; None where there is no such bar
BARS = {
    "retention %": (">= 99 mean, >= 98 each", lambda m, v: m >= 99 and min(v) >= 98),
    "student - baseline": (">= +2.5 mean, > 0 each", lambda m, v: m >= 2.5 and min(v) > 0),
    "macro-F1 - baseline": (">= 0 each", lambda m, v: min(v) >= 0),
    "params % of teacher": ("<= 25", lambda m, v: max(v) <= 25),
    "batch-1 speed-up": (">= 5", lambda m, v: min(v) >= 5),
}


def summary_table(title: str, rows: list[dict], bars: bool) -> None:
    print(f"\n{title}:")
    for key in rows[0]:
        values = [row[key] for row in rows]
        mean = statistics.mean(values)
        spread = f"  (min {min(values):.2f}, max {max(values):.2f})" if len(values) > 1 else ""
        bar = ""
        if bars and key in BARS:
            text, met = BARS[key]
            bar = f"   bar {text}: {'met' if met(mean, values) else 'MISSED'}"
        print(f"  {key:22s} mean {mean:8.2f}{spread}{bar}")
    print(flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--output", type=Path, default=Path("runs/student_recipe"))
    ap.add_argument("--ablation", action="store_true", help="the method-by-method table instead of the recipe")
    ap.add_argument("--fresh", action="store_true", help="repeat runs whose results are already there")
    ap.add_argument("--rows", nargs="+", default=None, help="with --ablation: only the rows whose names contain one of "
                    "these words (the recipe always runs)")
    ap.add_argument("--reuse-baseline", action="store_true", help="with --ablation: rows in SAME_BASELINE run no "
                    "baseline of their own and report the recipe run's")
    args, extra = ap.parse_known_args()
    name = Path(args.config).stem
    rows_wanted = {k: v for k, v in ABLATION.items() if args.rows is None or any(w in k for w in args.rows)}
    variants = {RECIPE: [], **rows_wanted} if args.ablation else {RECIPE: []}
    recipe = {}
    for variant, flags in variants.items():
        rows = []
        reuse = args.reuse_baseline and variant in SAME_BASELINE
        for seed in args.seeds:
            folder = args.output / name / variant.replace(" ", "_").replace(":", "").replace(",", "") / f"seed{seed}"
            own = [*extra, *flags, "--train.seed", str(seed)]  # the row with its own baseline
            summary, seconds = run(args.config, folder, [*own, "--report.baseline", "false"] if reuse else own,
                                   args.fresh, equivalent=own if reuse else None)
            if variant == RECIPE:
                recipe[seed] = summary
            rows.append(measures(summary, seconds, recipe.get(seed)))
            print(f"{variant} seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()), flush=True)
        summary_table(f"{name}, {variant}, seeds {args.seeds}", rows, bars=variant == RECIPE)

if __name__ == "__main__":
    main()
