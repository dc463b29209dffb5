"""The functions behind the CLI subcommands, for Python users and tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from textdistill.config import GENERATION_TASKS, RunConfig, load_config
from textdistill.errors import TextDistillError
from textdistill.pipeline.bench import run_bench
from textdistill.pipeline.evaluate import run_eval
from textdistill.pipeline.export import run_export
from textdistill.pipeline.run import run_distill
from textdistill.pipeline.sweep import run_sweep
from textdistill.report.render import read_summary, rewrite_report, summary_table
from textdistill.tasks import TASKS

__all__ = ["DEMO", "bench", "demo", "demo_config", "distill", "evaluate", "export", "refuse_file", "report",
           "run_demo", "shipped_config", "summary_text", "sweep", "teacher"]

# The built-in default: the default recipe on the built-in Rotten Tomatoes data, as the shipped file spells it.
DEMO = {"config": "rotten_tomatoes.yaml", "output_dir": "runs/demo"}


def shipped_config(name: str) -> Path:
    """A config file shipped inside the package (`textdistill/configs/`), e.g. 'rotten_tomatoes.yaml'."""
    path = Path(str(resources.files("textdistill") / "configs" / name))
    if not path.is_file():
        raise TextDistillError(f"no shipped config {name!r}; the package's configs are in {path.parent}")
    return path


def demo_config(overrides: dict | None = None) -> RunConfig:
    """The demo's config: the shipped default recipe, its run folder `runs/demo`, then `overrides`."""
    return load_config(shipped_config(DEMO["config"]), {"output_dir": DEMO["output_dir"], **(overrides or {})})


def refuse_file(path: str | Path, option: str) -> None:
    """A command's output folder that is an existing file: one line before anything runs, not a traceback later."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise TextDistillError(f"{option} {str(p)!r} is an existing file, not a folder; give the path of a folder "
                               "to write (a new one or a textdistill folder)")


def distill(cfg: RunConfig, overwrite: bool = False, resume: bool = False, **kwargs) -> dict | None:
    """`distill`: the one run of every task (`pipeline/run.py`)."""
    refuse_file(cfg.output_dir, "output_dir")
    return run_distill(cfg, overwrite, resume, **kwargs)


def teacher(cfg: RunConfig, output: str | Path | None = None, overwrite: bool = False) -> dict:
    """`teacher`: fine-tune a classifier teacher, or for seq2seq train the encoder-decoder teacher of
    `teacher.path: train` (cached; copied to `output` when given). An existing `output` is replaced only with
    `overwrite`, and only if it is a teacher folder textdistill wrote."""
    refuse_file(cfg.output_dir if output is None else output, "output_dir" if output is None else "--output")
    return TASKS[cfg.task].train_teacher(cfg, output, overwrite=overwrite)


def export(source: str | Path, output: str | Path, overwrite: bool = False) -> dict:
    """`export`: the student of a run folder (or a model folder) as a plain Hugging Face folder, checked."""
    refuse_file(output, "--output")
    return run_export(source, output, overwrite=overwrite)


def sweep(cfg: RunConfig, overwrite: bool = False) -> dict | None:
    """`distill --sweep` (classification only)."""
    refuse_file(cfg.output_dir, "output_dir")
    if cfg.task in GENERATION_TASKS:
        raise TextDistillError(f"distill --sweep is for task 'classification'; task {cfg.task!r} runs without --sweep")
    return run_sweep(cfg, overwrite=overwrite)


def evaluate(cfg: RunConfig, model, split: str = "test", teacher=None) -> dict:
    """`eval` (classification); a generation run's test metrics are in its summary.json and report."""
    if cfg.task in GENERATION_TASKS:
        raise TextDistillError(f"textdistill eval is for classification; a {cfg.task} run measures its test split "
                               "in distill (summary.json, report.md)")
    return run_eval(cfg, model, split=split, teacher=teacher)


def bench(run_dir: str | Path, latency_examples: int = 100, throughput_batches: int = 5) -> dict:
    """`bench` (classification runs); generation runs time greedy decoding in distill already."""
    if (Path(run_dir) / "summary.json").is_file() and read_summary(Path(run_dir)).get("task") in GENERATION_TASKS:
        raise TextDistillError("textdistill bench is for classification runs; a generation run's report already has "
                               "greedy tokens/s and latency (generation_speed)")
    return run_bench(run_dir, latency_examples, throughput_batches)


def demo(overrides: dict | None = None) -> dict:
    """The built-in default: MiniLM teacher fine-tuned on Rotten Tomatoes (cached), distilled, reported."""
    return run_demo(demo_config(overrides))


def run_demo(cfg: RunConfig) -> dict:
    """`demo` with a resolved config: it replaces an earlier demo run in output_dir, never another folder."""
    return distill(cfg, overwrite=True, command="demo", may_replace=_only_demo_runs)


def _only_demo_runs(marker: dict) -> str | None:
    if marker.get("command") == "demo":
        return None
    return f"it holds a run made by `textdistill {marker.get('command') or 'distill'}`, and demo replaces only its own"


def report(run_dir: str | Path) -> str:
    """Rewrite report.md and report.html from a run's summary.json; return the headline table."""
    return summary_text(rewrite_report(Path(run_dir)), run_dir)


def summary_text(summary: dict, run_dir: str | Path) -> str:
    return f"{summary_table(summary)}\n\nreport: {Path(run_dir) / 'report.md'} (and report.html)"
