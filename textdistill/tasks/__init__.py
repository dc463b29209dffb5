"""The tasks: what each contributes to the one run skeleton (`pipeline/run.py`); `base.py` says what that is."""

from __future__ import annotations

from textdistill.tasks.base import Task
from textdistill.tasks.classification import ClassificationTask
from textdistill.tasks.generation import GenerationTask

TASKS: dict[str, Task] = {
    "classification": ClassificationTask(),
    "causal_lm": GenerationTask("causal_lm"),
    "seq2seq": GenerationTask("seq2seq"),
}
