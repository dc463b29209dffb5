"""The functions behind the CLI subcommands, for Python users and tests."""

from __future__ import annotations

import json
from pathlib import Path

from textdistill.config import RunConfig, load_config
from textdistill.errors import TextDistillError
from textdistill.pipeline.bench import run_bench as bench
from textdistill.pipeline.distill import run_distill as distill
from textdistill.pipeline.evaluate import run_eval as evaluate
from textdistill.pipeline.export import run_export as export
from textdistill.pipeline.sweep import run_sweep as sweep
from textdistill.pipeline.teacher import run_teacher as teacher
from textdistill.report.render import summary_table, write_report

__all__ = ["DEMO_DEFAULTS", "bench", "demo", "distill", "evaluate", "export", "report", "summary_text", "sweep",
           "teacher"]

# The embedded default: the built-in data; every other setting is the config's default recipe.
DEMO_DEFAULTS = {"data.dataset": "rotten_tomatoes", "output_dir": "runs/demo"}


def demo(overrides: dict | None = None) -> dict:
    """The built-in default: MiniLM teacher fine-tuned on Rotten Tomatoes (cached), distilled, reported."""
    cfg: RunConfig = load_config(None, {**DEMO_DEFAULTS, **(overrides or {})})
    return distill(cfg, overwrite=True)


def report(run_dir: str | Path) -> str:
    """Rewrite report.md and report.html from a run's summary.json; return the headline table."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise TextDistillError(f"{str(run_dir)!r} has no summary.json; give the folder of a finished distill run")
    summary = json.loads(path.read_text(encoding="utf-8"))
    write_report(Path(run_dir), summary)
    return summary_text(summary, run_dir)


def summary_text(summary: dict, run_dir: str | Path) -> str:
    return f"{summary_table(summary)}\n\nreport: {Path(run_dir) / 'report.md'} (and report.html)"
