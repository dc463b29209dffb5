"""Shared by benchmarks/causal_lm.py and benchmarks/translation.py: one `distill` run per variant."""

from __future__ import annotations

import json
import time
from pathlib import Path

from textdistill.config import load_config
from textdistill.pipeline import commands


def run_variants(config: str, variants: dict[str, dict], base: dict, out: Path, prefix: str,
                 train: bool = True) -> dict[str, dict]:
    """Results of the teacher, the no-teacher student (trained once, in the first run) and one student per
    variant, each run with `base` and the variant's overrides in `out/variant<i>`. `train=False` reads the
    runs already in `out` instead (to tabulate them again)."""
    rows = {}
    for i, (name, settings) in enumerate(variants.items()):
        run_dir = out / f"variant{i}"
        if train:
            overrides = {**base, **settings, "output_dir": str(run_dir), "report.baseline": i == 0}
            commands.distill(load_config(config, overrides), overwrite=True)
        res = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["results"]
        if i == 0:
            rows["teacher"] = with_speed_up(res["teacher"], res["teacher"])
            rows["no-teacher student"] = with_speed_up(res["baseline"], res["teacher"])
        rows[f"{prefix}{name}"] = with_speed_up(res["student"], res["teacher"])
    return rows


def with_speed_up(row: dict, teacher: dict) -> dict:
    """`row` with `speed_up`: its greedy tokens/s over the teacher's, both measured interleaved in one run
    (a ratio across runs would mix the machine's drift between them into it)."""
    return {**row, "speed_up": row["tokens_per_s"] / teacher["tokens_per_s"]}


def elapsed(out: Path, started: float, table_only: bool) -> float:
    """Seconds of the benchmark: since `started`, or, when only re-tabulating, those of the run recorded."""
    previous = out / "results.json"
    if table_only and previous.is_file():
        return json.loads(previous.read_text(encoding="utf-8"))["seconds"]
    return time.perf_counter() - started

