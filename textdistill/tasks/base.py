"""What a task contributes to the one run (`pipeline/run.py`), and the objects the two hand each other.

The run's phases are the same for every task: prepare the run folder, load data, teacher and student,
serve the teacher signal through the cache, train the student and the no-teacher baseline on one step
budget, evaluate, measure speed, write the summary and report, check the saved student. A task supplies
only what differs, as the methods of `Task`: its data reader and encoding, its student, its teacher-signal
producers and objective, its metrics and speed measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from textdistill.config import RunConfig, TrainConfig
from textdistill.models.inputs import Batch
from textdistill.pipeline.signal import SignalServer
from textdistill.training.loop import Objective


@dataclass
class Teacher:
    """The frozen teacher (eval mode, no gradients) and where it came from."""

    folder: Path
    info: dict  # how it was made: base, training time, cached or not (goes into the summary)
    model: torch.nn.Module
    tokenizer: Any


@dataclass
class Prepared:
    """The student to train, and the data the task tokenised for it."""

    student: torch.nn.Module
    tokenizer: Any  # saved with the student (and the baseline)
    rebuild: Callable[..., torch.nn.Module]  # the same initial weights again (the no-teacher baseline); seed=k: another
    data: Any  # the task's tokenised splits
    summary: dict = field(default_factory=dict)  # the task's summary entries known before training


@dataclass
class Training:
    """What the student and the baseline train on, and how the student is judged on validation."""

    student_data: Any  # examples with the teacher signal (`__len__`, `lengths`, `collate`)
    baseline_data: Any  # the same task's examples with gold labels or references only
    objective: Objective
    budget_examples: int  # examples whose epochs set the optimizer steps of student and baseline alike
    evaluate: Callable[[torch.nn.Module], dict]  # validation metrics of a model
    identity: dict  # what a student checkpoint was trained on (data, teacher signal), checked on resume
    baseline_identity: dict
    sizes: dict  # example counts for the summary
    extra: torch.nn.Module | None = None  # trained beside the student, never exported (projections, heads, peers)
    count: Callable[[Batch], Any] | None = None  # the student's units per term, when not the task's `count`
    extra_learning_rates: dict[str, float] | None = None  # children of `extra` with their own learning rate
    trains_teacher: bool = False  # online distillation: the teacher is trained in the student's loop
    student_form: Callable[[torch.nn.Module], Any] | None = None  # a context the student trains inside (fake quant)
    summary: dict = field(default_factory=dict)  # the task's summary entries about how the student trains
    evaluate_teacher: Callable[[], dict] | None = None  # the teacher's validation metrics (`evaluate`'s names)


class Task(Protocol):
    name: str

    def selection_metric(self, train: TrainConfig) -> str:
        """The validation metric (a key of `Training.evaluate`'s result, higher is better) that keeps a model's
        best checkpoint and decides early stopping under these train settings."""

    def count(self, batch: Batch) -> int:
        """Units a micro-batch's loss terms are summed over (examples, or target tokens)."""

    def load_data(self, cfg: RunConfig) -> Any:
        """Read and split the configured examples."""

    def load_teacher(self, cfg: RunConfig, data: Any) -> Teacher:
        """The frozen teacher, made first (and cached) when the config asks for one made here."""

    def build_student(self, cfg: RunConfig, data: Any, teacher: Teacher) -> Prepared:
        """Tokenise the data, build the student and check, before any training, that it pairs with the teacher."""

    def training(self, cfg: RunConfig, prepared: Prepared, teacher: Teacher, serve: SignalServer) -> Training:
        """The teacher signal (each output through `serve`), the training sets, objective and validation."""

    def load_model(self, cfg: RunConfig, folder: Path, role: str) -> torch.nn.Module:
        """A trained model of this task from its folder (a finished phase on resume, the export check)."""

    def probe_batch(self, prepared: Prepared) -> Batch:
        """A few test examples on which the saved student must give the trained student's logits."""

    def test_results(self, cfg: RunConfig, models: dict[str, torch.nn.Module], prepared: Prepared,
                     teacher: Teacher) -> tuple[dict[str, dict], dict]:
        """Test metrics and speed of each model, and the task's summary entries that need them."""

    def train_teacher(self, cfg: RunConfig, output: str | Path | None = None, overwrite: bool = False) -> dict:
        """`textdistill teacher`: make this task's teacher from the configured data (into `output`, replacing a
        teacher folder of ours there only with `overwrite`)."""
