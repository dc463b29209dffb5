"""The `textdistill` command. Each subcommand calls one plain function that Python users call too.

Config flags are made from the config dataclasses: `--train.epochs 2` overrides `train: {epochs: 2}`
in the YAML file given with `--config`. Values are read as YAML scalars (`null`, `[1, 4]`, `true`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import typing
from pathlib import Path

import yaml

from textdistill.config import TASK_NAMES, RunConfig, field_tasks, iter_fields, load_config, replaced
from textdistill.errors import TextDistillError


def _add_config_flags(parser: argparse.ArgumentParser, defaults: RunConfig) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML run configuration; flags below override it.")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for dotted, tp, f in iter_fields():
        head = dotted.rsplit(".", 1)[0] if "." in dotted else "run"
        group = groups.setdefault(head, parser.add_argument_group(f"config: {head}"))
        value = defaults
        for part in dotted.split("."):
            value = getattr(value, part)
        choices = typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None
        tasks = field_tasks(dotted)
        group.add_argument(f"--{dotted}", dest=dotted, default=argparse.SUPPRESS, metavar="V",
                           help=f"{f.metadata['doc']} [default: {value!r}]"
                           + (f" {{{', '.join(choices)}}}" if choices else "")
                           + (f" [{', '.join(tasks)} only]" if tasks != TASK_NAMES else ""))


def _is_text(tp) -> bool:
    """True for `str` and `str | None` fields: their flag values are taken literally (a file named 2024)."""
    args = typing.get_args(tp) or (tp,)
    return str in args and all(a in (str, type(None)) for a in args)


def _overrides(args: argparse.Namespace) -> dict:
    """Flags given on the command line, as {dotted name: value}; values read as YAML scalars."""
    out = {}
    for dotted, tp, _ in iter_fields():
        if not hasattr(args, dotted):
            continue
        raw = getattr(args, dotted)
        if _is_text(tp):
            out[dotted] = None if raw.lower() in ("null", "none", "~") else raw
            continue
        try:
            out[dotted] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[dotted] = raw  # the config check reports the type error with the field's name
    return out


def _config(args: argparse.Namespace, extra: dict | None = None) -> RunConfig:
    cfg = load_config(args.config, {**(extra or {}), **_overrides(args)})
    if args.quiet:  # no progress bars either
        bars = [name for name in ("train.progress", "teacher.finetune.progress") if cfg.task in field_tasks(name)]
        cfg = replaced(cfg, dict.fromkeys(bars, False))
    return cfg


def _run_config_path(args: argparse.Namespace) -> str:
    """The config.yaml of the run folder named by --output_dir: what `--resume` alone continues."""
    output_dir = getattr(args, "output_dir", None) or RunConfig().output_dir
    path = Path(output_dir).expanduser() / "config.yaml"
    if not path.is_file():
        raise TextDistillError(f"nothing to resume: {str(path)!r} does not exist; give the run's --output_dir")
    return str(path)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="textdistill", description="Knowledge distillation for NLP: train a "
                                     "small, fast student from a large teacher, prove it, export it.")
    parser.add_argument("-q", "--quiet", action="store_true", help="Only print results and errors.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    defaults = RunConfig()

    p = sub.add_parser("teacher", help="Fine-tune a teacher classifier on labelled data.", formatter_class=fmt,
                       description="Fine-tune teacher.base on the configured data and save a Hugging Face folder.")
    p.add_argument("--output", metavar="DIR", help="Folder for the fine-tuned teacher [default: <output_dir>/teacher].")
    p.add_argument("--overwrite", action="store_true",
                   help="Replace an existing teacher folder written by textdistill.")
    _add_config_flags(p, defaults)

    p = sub.add_parser("distill", help="Train a student from a teacher, with a no-teacher baseline and a report.",
                       formatter_class=fmt)
    p.add_argument("--overwrite", action="store_true", help="Replace an existing run folder written by textdistill.")
    p.add_argument("--resume", action="store_true",
                   help="Continue the interrupted run in --output_dir from its last checkpoint; without --config "
                   "the run's own config.yaml is used.")
    p.add_argument("--sweep", action="store_true",
                   help="First try the sweep.* grid (temperatures, alphas, students) on validation within "
                   "sweep.time_budget_s, then run the best setting; the report lists the grid.")
    _add_config_flags(p, defaults)

    p = sub.add_parser("eval", help="Evaluate a classifier folder on a split of the configured data.", formatter_class=fmt)
    p.add_argument("--model", required=True, metavar="DIR", help="Hugging Face classifier folder to evaluate.")
    p.add_argument("--split", default="test", help="train, validation or test.")
    p.add_argument("--teacher", metavar="DIR", help="Also report agreement with this teacher folder.")
    _add_config_flags(p, defaults)

    p = sub.add_parser("report", help="Rewrite and print the report of a finished run.", formatter_class=fmt)
    p.add_argument("run_dir", help="Run folder written by distill or demo.")

    p = sub.add_parser("export", help="Export the student as a plain Hugging Face folder.", formatter_class=fmt)
    p.add_argument("source", help="Run folder (its student/ is exported) or a model folder.")
    p.add_argument("--output", required=True, metavar="DIR", help="Folder to write.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing export folder written by textdistill.")

    p = sub.add_parser("bench", help="Latency, throughput, size and accuracy of a run's teacher and student in "
                       "PyTorch and ONNX Runtime (float32, int8); writes bench.json and updates the report.",
                       formatter_class=fmt)
    p.add_argument("run_dir", help="Folder of a finished distill run.")
    p.add_argument("--latency_examples", type=int, default=100, help="Test examples timed one at a time.")
    p.add_argument("--throughput_batches", type=int, default=5, help="Batches of 32 timed for throughput.")
    p.add_argument("--json", action="store_true", help="Print bench.json instead of the table.")
    p = sub.add_parser("demo", help="The built-in default end to end: fine-tune the MiniLM teacher on Rotten "
                       "Tomatoes (cached), distil, compare with a no-teacher baseline, print the report.",
                       formatter_class=fmt)
    _add_config_flags(p, defaults)
    return parser


def _setup_logging(quiet: bool) -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from tqdm.auto import tqdm

    class BarSafe(logging.StreamHandler):
        def emit(self, record: logging.LogRecord) -> None:  # above a running progress bar, not through it
            try:
                tqdm.write(self.format(record), file=self.stream)
            except Exception:
                self.handleError(record)

    handler = BarSafe(sys.stderr)

    class Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            prefix = "warning: " if record.levelno >= logging.WARNING else ""
            return f"textdistill: {prefix}{record.getMessage()}"

    handler.setFormatter(Format())
    log = logging.getLogger("textdistill")
    log.handlers[:] = [handler]
    # with several processes, only the main one (rank 0) reports progress
    other_process = os.environ.get("RANK", "0") != "0"
    log.setLevel(logging.WARNING if quiet or other_process else logging.INFO)
    log.propagate = False


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.quiet)
    from textdistill.ownership import protecting

    with protecting(getattr(args, "config", None)):  # the folder holding the config file in use is never replaced
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    from textdistill.pipeline import commands

    if args.command == "teacher":
        out = commands.teacher(_config(args), output=args.output, overwrite=args.overwrite)
    elif args.command == "distill":
        if args.resume and args.config is None:
            args.config = _run_config_path(args)
        cfg = _config(args)
        if args.sweep and args.resume:
            raise TextDistillError("--sweep and --resume cannot be combined: a sweep's final run resumes with "
                                   "--resume alone (its config.yaml holds the best setting); rerun a sweep with "
                                   "--sweep --overwrite")
        if args.sweep:
            out = commands.sweep(cfg, overwrite=args.overwrite)
        else:
            out = commands.distill(cfg, overwrite=args.overwrite, resume=args.resume)
        if out is not None:  # None on the other processes of a multi-process run
            print(commands.summary_text(out, cfg.output_dir))
        return 0
    elif args.command == "eval":
        out = commands.evaluate(_config(args), args.model, split=args.split, teacher=args.teacher)
    elif args.command == "report":
        print(commands.report(args.run_dir))
        return 0
    elif args.command == "export":
        out = commands.export(args.source, args.output, overwrite=args.overwrite)
    elif args.command == "bench":
        out = commands.bench(args.run_dir, args.latency_examples, args.throughput_batches)
        if not args.json:
            print(commands.bench_text(out, args.run_dir))
            return 0
    else:  # demo: the shipped default recipe (or --config), in runs/demo
        if args.config is None:
            args.config = str(commands.shipped_config(commands.DEMO["config"]))
        cfg = _config(args, {"output_dir": commands.DEMO["output_dir"]})
        out = commands.run_demo(cfg)
        print(commands.summary_text(out, cfg.output_dir))
        return 0
    print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(argv)
    except TextDistillError as e:
        print(f"textdistill: error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as e:
        # training stops at a step boundary and says where its checkpoint is; elsewhere nothing is lost
        print(f"textdistill: {e or 'interrupted'}", file=sys.stderr)
        code = getattr(e, "code", 130)
    sys.exit(code)


if __name__ == "__main__":
    main()
