"""Field helpers and the task names every section's fields refer to."""

from __future__ import annotations

from dataclasses import field
from typing import Any

TASK_NAMES = ("classification", "causal_lm", "seq2seq")
GENERATION_TASKS = ("causal_lm", "seq2seq")
CLASSIFICATION = ("classification",)
# How teacher-labelled variants can be made (`data.augment_kinds`; textdistill/data/augment.py).
AUGMENT_KINDS = ("tokens", "neighbours", "span", "mix")


def doc(default: Any, text: str, *, tasks: tuple[str, ...] = TASK_NAMES, instead: str | None = None,
        per_task: dict[str, Any] | None = None) -> Any:
    """A dataclass field with its documentation, the tasks that use it, what to set instead under the other
    tasks, and defaults that differ by task (`per_task`)."""
    meta = {"doc": text, "tasks": tasks, "instead": instead, "per_task": per_task or {}}
    return field(default=default, metadata=meta)


def section(factory: Any, text: str, tasks: tuple[str, ...] = TASK_NAMES) -> Any:
    return field(default_factory=factory, metadata={"doc": text, "tasks": tasks, "instead": None, "per_task": {}})
