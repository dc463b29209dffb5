"""End-to-end wall time of the built-in default (`textdistill demo`) before and after a change.

    python benchmarks/e2e_wall_time.py [--before 7e76ee4] [--rounds 1] [--cache DIR] [--output DIR]

The "before" code is `git archive`d from the given commit into a temporary folder and run with the same
Python environment as the current checkout ("after"). Both use one cache folder: the fine-tuned teacher
is built once by a warm-up run (reported as the first run) and reused, since fine-tuning the teacher is
the same float32 recipe in both. The teacher-output cache (`<cache>/scores`) is emptied before every
timed run, so each pays for scoring the teacher once, as a fresh `distill` does. Runs alternate
before/after, `--rounds` times; each is a fresh process. Prints wall times, the after/before ratio and
the accuracies, and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export_commit(ref: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_demo(src: Path, output: Path, cache: Path, extra: list[str]) -> tuple[float, dict]:
    shutil.rmtree(cache / "scores", ignore_errors=True)
    output = output.resolve()  # the runs start in the code folder they time
    shutil.rmtree(output, ignore_errors=True)
    env = {**os.environ, "TEXTDISTILL_CACHE": str(cache), "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "textdistill", "-q", "demo", "--output_dir", str(output), *extra]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=src, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, json.loads((output / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="7e76ee4", help="Commit of the 'before' code.")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None, help="Cache folder (default: a new temp folder).")
    parser.add_argument("--output", type=Path, default=Path("runs/bench_e2e"))
    parser.add_argument("--no-warmup", action="store_true", help="The cache already holds the fine-tuned teacher.")
    args, extra = parser.parse_known_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="textdistill-cache-"))
    before_src = export_commit(args.before, Path(tempfile.mkdtemp(prefix="textdistill-before-")))

    if not args.no_warmup:
        first, _ = run_demo(ROOT, args.output / "warmup", cache, extra)
        print(f"warm-up run (after, teacher fine-tune included): {first:.0f} s", flush=True)
    times: dict[str, list[float]] = {"before": [], "after": []}
    summaries: dict[str, dict] = {}
    for r in range(args.rounds):
        for name, src in (("before", before_src), ("after", ROOT)):
            seconds, summaries[name] = run_demo(src, args.output / f"{name}{r}", cache, extra)
            times[name].append(seconds)
            print(f"round {r} {name}: {seconds:.0f} s", flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'':30}{'before':>12}{'after':>12}")
    print(f"{'wall time, median (s)':30}{med['before']:12.0f}{med['after']:12.0f}")
    for stage in ("student", "baseline"):
        row = [summaries[k]["runs"][stage]["seconds"] for k in ("before", "after")]
        print(f"{stage + ' training (s)':30}{row[0]:12.0f}{row[1]:12.0f}")
    row = [summaries[k]["runs"]["student"].get("teacher_signal_seconds", float("nan")) for k in ("before", "after")]
    print(f"{'teacher scoring (s)':30}{row[0]:12.0f}{row[1]:12.0f}")
    for model in ("teacher", "student", "baseline"):
        row = [100 * summaries[k]["results"][model]["accuracy"] for k in ("before", "after")]
        print(f"{model + ' accuracy (%)':30}{row[0]:12.2f}{row[1]:12.2f}")
    print(f"\nafter / before wall time: {med['after'] / med['before']:.2f} "
          f"({med['before'] / med['after']:.2f}x faster); before = {args.before}")


if __name__ == "__main__":
    main()
