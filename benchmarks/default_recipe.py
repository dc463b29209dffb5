"""The built-in default end to end, timed: first run (teacher fine-tune included) and cached rerun.

    python benchmarks/default_recipe.py [--cache DIR] [--output DIR] [extra `textdistill demo` flags]

Runs `textdistill demo` twice in fresh processes with an empty teacher cache, then prints the wall time
of each run, the issue's bars (retention >= 95%, batch-1 speed-up >= 3x, beats the no-teacher
baseline, <= 20 min first run, <= 6 min cached) and the measured values. Nothing is asserted: the script
reports what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(output: Path, cache: Path, extra: list[str]) -> float:
    env = {**os.environ, "TEXTDISTILL_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "textdistill", "-q", "demo", "--output_dir", str(output), *extra]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="Teacher cache folder (default: a new temp folder).")
    parser.add_argument("--output", type=Path, default=Path("runs/bench_default"))
    args, extra = parser.parse_known_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="textdistill-cache-"))

    first = run_demo(args.output / "first", cache, extra)
    second = run_demo(args.output / "cached", cache, extra)
    summaries = [json.loads((args.output / name / "summary.json").read_text()) for name in ("first", "cached")]

    print(f"{'':34}{'first run':>12}{'cached run':>12}")
    print(f"{'wall time (s)':34}{first:12.0f}{second:12.0f}")
    rows = [
        ("teacher accuracy", lambda r: 100 * r["teacher"]["accuracy"], "{:.2f}%"),
        ("student accuracy", lambda r: 100 * r["student"]["accuracy"], "{:.2f}%"),
        ("baseline accuracy (no teacher)", lambda r: 100 * r["baseline"]["accuracy"], "{:.2f}%"),
        ("retention (% of teacher)", lambda r: 100 * r["student"]["accuracy"] / r["teacher"]["accuracy"], "{:.1f}%"),
        ("student - baseline (points)", lambda r: 100 * (r["student"]["accuracy"] - r["baseline"]["accuracy"]), "{:+.2f}"),
        ("batch-1 speed-up (p50)", lambda r: r["teacher"]["latency_p50_ms"] / r["student"]["latency_p50_ms"], "{:.2f}x"),
        ("student parameters (M)", lambda r: r["student"]["parameters"] / 1e6, "{:.2f}"),
        ("student size on disk (MiB)", lambda r: r["student"]["disk_bytes"] / 2**20, "{:.1f}"),
        ("teacher parameters (M)", lambda r: r["teacher"]["parameters"] / 1e6, "{:.2f}"),
    ]
    for name, fn, fmt in rows:
        print(f"{name:34}" + "".join(f"{fmt.format(fn(s['results'])):>12}" for s in summaries))
    print(f"\nteacher cache: {cache}")


if __name__ == "__main__":
    main()
