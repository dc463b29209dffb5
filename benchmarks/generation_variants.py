"""Shared by benchmarks/causal_lm.py and benchmarks/translation.py: one `distill` run per variant."""

from __future__ import annotations

from pathlib import Path

from textdistill.config import load_config
from textdistill.pipeline import commands


def run_variants(config: str, variants: dict[str, dict], base: dict, out: Path, prefix: str) -> dict[str, dict]:
    """Results of the teacher, the no-teacher student (trained once, in the first run) and one student per
    variant, each run with `base` and the variant's overrides in `out/variant<i>`."""
    rows = {}
    for i, (name, settings) in enumerate(variants.items()):
        overrides = {**base, **settings, "output_dir": str(out / f"variant{i}"), "report.baseline": i == 0}
        res = commands.distill(load_config(config, overrides), overwrite=True)["results"]
        if i == 0:
            rows["teacher"] = res["teacher"]
            rows["no-teacher student"] = res["baseline"]
        rows[f"{prefix}{name}"] = res["student"]
    return rows
