"""Typed run configuration: YAML files and flags in, a frozen, checked `RunConfig` out.

A run is described by one YAML file. YAML is only the serialisation: the file is parsed with
`yaml.safe_load` (no tags, no code), then validated into the frozen dataclasses of the `schema` package and
checked (`config_checks.py`). Precedence: defaults (the run's task's) < YAML file < CLI flags. Unknown keys and
wrong types are errors that list the valid choices (and suggest the closest name).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from textdistill.errors import TextDistillError, preview
from textdistill.schema import (CLASSIFICATION, GENERATION_TASKS, STUDENT_SIZES, TASK_NAMES, DataConfig,
                                GenerationConfig, LossConfig, OnlineConfig, QuantisationConfig, ReportConfig,
                                RunConfig, StudentConfig, SweepConfig, TeacherArchitecture, TeacherConfig, TrainConfig)

__all__ = ["CLASSIFICATION", "GENERATION_TASKS", "STUDENT_SIZES", "TASK_NAMES", "DataConfig", "GenerationConfig",
           "LossConfig", "OnlineConfig", "QuantisationConfig", "ReportConfig", "RunConfig", "StudentConfig",
           "SweepConfig", "TeacherArchitecture", "TeacherConfig", "TrainConfig", "defaults", "field_tasks", "from_dict", "get", "iter_fields",
           "load_config", "replaced", "save_config", "to_dict"]


# A number in exponent form without a dot (5e-5), which YAML 1.1 reads as text.
_SCIENTIFIC = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")
# YAML 1.1 reads these words as booleans: `mixed_precision: no` arrives as False
_YAML_BOOLEAN_WORDS = {False: ("no", "off", "false", "n"), True: ("yes", "on", "true", "y")}

# Fields of the `generation` section before it was split by concept: a file that still uses them is told
# where each one lives now.
MOVED = {
    "generation.dataset": "data.dataset", "generation.train": "data.train",
    "generation.validation": "data.validation", "generation.test": "data.test",
    "generation.validation_fraction": "data.validation_fraction", "generation.test_fraction": "data.test_fraction",
    "generation.split_seed": "data.split_seed", "generation.max_train_examples": "data.max_train_examples",
    "generation.max_eval_examples": "data.max_eval_examples", "generation.source_prefix": "data.source_prefix",
    "generation.max_length": "data.max_length", "generation.max_target_length": "data.max_target_length",
    "generation.chat_template": "data.chat_template", "generation.loss": "loss.soft",
    "generation.ce_weight": "loss.alpha", "generation.kd_weight": "loss.beta",
    "generation.temperature": "loss.temperature", "generation.jsd_beta": "loss.jsd_beta",
    "generation.skew_alpha": "loss.skew_alpha", "generation.student_layers": "student.layers",
    "generation.student_encoder_layers": "student.encoder_layers",
    "generation.teacher_layers": "teacher.architecture.num_layers",
    "generation.teacher_d_model": "teacher.architecture.hidden_size",
    "generation.teacher_heads": "teacher.architecture.num_heads",
    "generation.teacher_ffn": "teacher.architecture.intermediate_size",
    "generation.vocab_size": "teacher.architecture.vocab_size",
    "generation.speed_prompts": "report.latency_examples",
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join("empty" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints widened to float, lists made tuples)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except TextDistillError:
                pass
        raise TextDistillError(f"{where}: expected {_type_name(tp)}, got {preview(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and value not in choices:
            words = [c for c in choices if isinstance(c, str) and c.lower() in _YAML_BOOLEAN_WORDS[value]]
            if len(words) == 1:  # the choice the user wrote, e.g. 'no', read back from YAML's boolean
                return words[0]
        if value not in choices:
            raise TextDistillError(
                f"{where}: {preview(value)} is not a valid choice; use one of {', '.join(map(repr, choices))}"
            )
        return value
    if origin is tuple:  # a YAML list, kept immutable
        if not isinstance(value, (list, tuple)):
            raise TextDistillError(f"{where}: expected {_type_name(tp)}, got {preview(value)}")
        item = typing.get_args(tp)[0]
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 5e-5 (no dot) as text; it is meant as a number
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # .nan and .inf are valid YAML but no setting means anything with them
            if abs(value) > 1e300 or not math.isfinite(value):
                raise TextDistillError(f"{where}: expected a finite number, got {preview(value)}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise TextDistillError(f"{where}: expected {_type_name(tp)}, got {preview(value)}")


def _unknown_key(cls: type, key: str, where: str) -> TextDistillError:
    dotted = f"{where}.{key}".removeprefix("config.")
    if dotted in MOVED:
        return TextDistillError(f"{dotted} is now {MOVED[dotted]}; move the setting there")
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TextDistillError(f"{where}: unknown key {preview(key)}{hint}; valid keys: {', '.join(names)}")


def from_dict(cls: type, values: dict, where: str = "config", base: Any = None) -> Any:
    """A `cls` made from `base` (default: `cls()`) with the fields of a plain dict, every key and type checked.

    Nested sections update the section object already in `base`, so a section keeps its own defaults
    for the keys a file leaves out.
    """
    obj = base if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    changes = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown_key(cls, key, where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise TextDistillError(f"{where}.{key}: expected a mapping of {tp.__name__} fields, got {preview(value)}")
            changes[key] = from_dict(tp, value, f"{where}.{key}", getattr(obj, key))
        else:
            changes[key] = _convert(value, tp, f"{where}.{key}")
    return dataclasses.replace(obj, **changes)


def _plain(value: Any) -> Any:
    """Dicts, lists and scalars only (what YAML and JSON write)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_dict(obj: Any) -> dict:
    """A config (or section) as plain nested dicts and lists."""
    return _plain(dataclasses.asdict(obj))


def iter_fields(cls: type = RunConfig, prefix: str = "") -> typing.Iterator[tuple[str, Any, dataclasses.Field]]:
    """Yield (dotted name, annotation, field) for every leaf field: the CLI makes a flag of each."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp, f


def field_tasks(dotted: str) -> tuple[str, ...]:
    """The tasks that use field `dotted`: those its field and every section above it declare."""
    cls, tasks = RunConfig, set(TASK_NAMES)
    for part in dotted.split("."):
        f = {x.name: x for x in dataclasses.fields(cls)}[part]
        tasks &= set(f.metadata["tasks"])
        cls = typing.get_type_hints(cls)[part]
    return tuple(t for t in TASK_NAMES if t in tasks)


def get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def defaults(task: str = "classification") -> RunConfig:
    """The default configuration of a task: the dataclass defaults with the task's own where they differ."""
    cfg = RunConfig(task=task)
    for dotted, _, f in iter_fields():
        if task in f.metadata["per_task"]:
            cfg = _replace(cfg, dotted, f.metadata["per_task"][task])
    return cfg


def _replace(obj: Any, dotted: str, value: Any) -> Any:
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _replace(getattr(obj, head), rest, value)})


def replaced(cfg: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """A copy of `cfg` with the dotted fields of `changes` set ({"loss.temperature": 4.0, ...}); the copy is
    checked like a loaded configuration."""
    from textdistill.config_checks import check_config

    for dotted, value in changes.items():
        cfg = _replace(cfg, dotted, value)
    check_config(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """The task's defaults, then the YAML file at `path`, then `overrides` ({"train.epochs": 2, ...})."""
    from textdistill.config_checks import check_config

    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise TextDistillError(f"config file {str(p)!r} does not exist; check the path")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            first = str(e).strip().splitlines()[0]
            raise TextDistillError(f"config file {str(p)!r} is not valid YAML ({first}); fix the syntax") from None
        if not isinstance(raw, dict):
            raise TextDistillError(f"config file {str(p)!r} must hold a mapping of sections, not {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise TextDistillError(f"cannot set {preview(dotted)}: {preview(part)} is not a section")
            node = child
        node[leaf] = value
    task = _convert(raw.get("task", "classification"), typing.get_type_hints(RunConfig)["task"], "config.task")
    cfg = from_dict(RunConfig, raw, base=defaults(task))
    check_config(cfg)
    return cfg


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """The fields the run's task uses, as YAML (the others are at their defaults, by `check_config`)."""
    values: dict = {}
    for dotted, _, _ in iter_fields():
        if cfg.task in field_tasks(dotted):
            node = values
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = get(cfg, dotted)
    Path(path).write_text(yaml.safe_dump(_plain(values), sort_keys=False), encoding="utf-8")
