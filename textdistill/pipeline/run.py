"""`distill`, written once for every task: a student from a teacher, the no-teacher baseline beside it,
evaluation, report and export check.

The phases, each the same for classification, causal LMs and encoder-decoders (the task, `tasks/`,
contributes only what differs):
1. the data (checked before anything is touched), the run folder (`runs.open_run_folder`: locked for the
   run's life; an old run it replaces is deleted once this one has prepared cleanly), teacher and student
   (`prepare`);
2. the teacher signal, made once and served through the cross-run cache (`signal.SignalServer`);
3. the student, trained on it (`train_student`), and the baseline: the same student, same initial
   weights, same optimizer-step budget and evaluation schedule, gold labels or references only;
4. evaluation on test, speed, summary.json, report.md/html, and a check that the saved student reloads
   with the same outputs.
Each finished phase leaves its outputs and a marker, so `--resume` skips it; the phase in progress
continues from its last training checkpoint. With several processes (`accelerate launch`, `torchrun`)
every process trains; the main process alone makes the teacher signal (shared with the others) and
writes: the student and baseline folders, checkpoints, caches, summary and report.

`distill --sweep` builds its trials from the same phases (`prepare`, `train_student`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from textdistill.atomic import write_json
from textdistill.config import RunConfig, TrainConfig, to_dict
from textdistill.errors import TextDistillError
from textdistill.models.size import count_parameters, folder_weights_bytes
from textdistill.ownership import OwnedFolder
from textdistill.pipeline.export import check_saved_student
from textdistill.pipeline.phases import finished_phase, mark_finished, trained_phase
from textdistill.pipeline.runs import apply_threads, check_sources, open_run_folder, save_model
from textdistill.pipeline.signal import SignalServer
from textdistill.report.render import write_report
from textdistill.tasks import TASKS
from textdistill.tasks.base import Prepared, Task, Teacher, Training
from textdistill.training.checkpoints import load_weights
from textdistill.training.distributed import is_main, wait_for_everyone
from textdistill.training.loop import total_steps, train
from textdistill.training.tracking import Tracking, check_installed, flat_numbers, start_tracking
from textdistill.training.objectives import label_objective

log = logging.getLogger("textdistill")
SWEEP = "sweep.json"


@dataclass
class Plan:
    """Everything a run has prepared before training: what the phases after it work from."""

    cfg: RunConfig
    run_dir: Path
    resume: bool
    task: Task
    teacher: Teacher
    prepared: Prepared
    training: Training
    student_train: TrainConfig  # the train settings with the run's step budget and evaluation schedule
    baseline_train: TrainConfig
    signal_seconds: float  # making (or reading) the teacher signal
    attention: list = field(default_factory=list)  # each model's attention implementation as loaded
    tracking: Tracking = field(default_factory=Tracking)  # the run's experiment trackers (train.report_to)
    teacher_check: dict | None = None  # the teacher's validation score against the baseline's

    @property
    def metric(self) -> str:
        """The validation metric that keeps the best checkpoint of student and baseline."""
        return self.task.selection_metric(self.cfg.train)


def run_distill(cfg: RunConfig, overwrite: bool = False, resume: bool = False, *, sweep: dict | None = None,
                command: str = "distill", may_replace=None) -> dict | None:
    """Run the whole recipe and return the summary that `report.md` is made from (None on processes other
    than the main one). With `resume`, continue the interrupted run in `cfg.output_dir`. `sweep` (the grid
    of `distill --sweep`) is kept in the run folder and added to the summary. `command` is recorded in the
    run folder's marker; `may_replace(marker)` narrows which earlier run `overwrite` may replace."""
    started = time.perf_counter()
    folder, data = start_run(cfg, overwrite, resume, command=command, may_replace=may_replace)
    with folder:
        return _distill(cfg, folder, data, resume, sweep, started)


def _distill(cfg: RunConfig, folder: OwnedFolder, data, resume: bool, sweep: dict | None,
             started: float) -> dict | None:
    run_dir = folder.path
    if sweep is not None and is_main():
        write_json(run_dir / SWEEP, sweep)
    elif resume and (run_dir / SWEEP).is_file():
        sweep = json.loads((run_dir / SWEEP).read_text(encoding="utf-8"))
    if resume and finished_phase(run_dir, "report") is not None:
        log.info("%s: the run had already finished", run_dir)
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8")) if is_main() else None
    tracking = start_tracking(cfg.train.report_to, run_dir / "tracking", run_dir.resolve().name, to_dict(cfg),
                              main=is_main())
    try:
        plan = prepare(cfg, run_dir, resume, data, tracking)
        folder.started()  # prepared and checked: the run it replaces (if any) can go
        models: dict[str, torch.nn.Module] = {"teacher": plan.teacher.model}
        runs: dict[str, dict] = {}
        # the baseline first: a teacher no better than the student trained alone is said before distilling
        if cfg.report.baseline:
            baseline, runs["baseline"] = train_baseline(plan)
            plan.teacher_check = teacher_against_baseline(plan, runs["baseline"])
        models["student"], runs["student"] = train_student(plan)
        if cfg.report.baseline:
            models["baseline"] = baseline
        if not is_main():
            return None
        return evaluate_and_report(plan, models, runs, time.perf_counter() - started, sweep)
    finally:
        tracking.finish()


def start_run(cfg: RunConfig, overwrite: bool, resume: bool, *, command: str = "distill",
              may_replace=None) -> tuple[OwnedFolder, Any]:
    """The run's data, read and checked, and then its run folder, opened (use it as a context manager): a
    config or data problem never touches an old run in output_dir."""
    apply_threads(cfg.train.threads)
    check_installed(cfg.train.report_to)
    data = TASKS[cfg.task].load_data(cfg)
    check_sources(cfg)
    return open_run_folder(cfg, overwrite, resume, command=command, may_replace=may_replace), data


def prepare(cfg: RunConfig, run_dir: Path, resume: bool, data=None, tracking: Tracking | None = None) -> Plan:
    """Data (read here unless given), teacher, student and the teacher signal, checked before any training;
    `tracking` gets the student's and the baseline's metrics (none for a sweep's trials)."""
    task = TASKS[cfg.task]
    data = task.load_data(cfg) if data is None else data
    teacher = task.load_teacher(cfg, data)
    prepared = task.build_student(cfg, data, teacher)
    attention = _attention_implementations(prepared.student, teacher.model)
    serve = SignalServer()
    training = task.training(cfg, prepared, teacher, serve)
    student_train, baseline_train = step_budget(cfg.train, training.budget_examples, len(training.baseline_data))
    return Plan(cfg, run_dir, resume, task, teacher, prepared, training, student_train, baseline_train,
                serve.seconds, attention, tracking or Tracking())


def step_budget(train_cfg: TrainConfig, budget_examples: int,
                baseline_examples: int) -> tuple[TrainConfig, TrainConfig]:
    """The student's and the baseline's train settings: the same optimizer steps (`budget_examples` for
    `train.epochs`) and the same evaluation schedule, whatever extra data the teacher signal adds to the
    student's set (token variants, sequence-KD targets) or the gold set lacks."""
    steps = total_steps(budget_examples, train_cfg)
    per_epoch = total_steps(budget_examples, dataclasses.replace(train_cfg, epochs=1.0, max_steps=None))
    student = dataclasses.replace(train_cfg, max_steps=steps, eval_every=train_cfg.eval_every or per_epoch)
    # as many passes over the gold examples as make the same steps
    baseline_epoch = total_steps(baseline_examples, dataclasses.replace(train_cfg, epochs=1.0, max_steps=None))
    return student, dataclasses.replace(student, epochs=(steps + 0.5) / baseline_epoch)


def train_student(plan: Plan, max_steps: int | None = None) -> tuple[torch.nn.Module, dict]:
    """The student phase: trained on the teacher signal (at most `max_steps`, for a sweep's trial)."""
    cfg, t = plan.cfg, plan.training
    settings = plan.student_train
    if max_steps is not None:
        settings = dataclasses.replace(settings, max_steps=min(max_steps, settings.max_steps), checkpoint_every=0)
    student = plan.prepared.student

    def run_training():
        with (t.student_form or contextlib.nullcontext)(student):  # fake quantisation lives only in the loop
            return train(student, t.student_data, t.objective, settings, name="student", run_dir=plan.run_dir,
                         evaluate=t.evaluate, metric=plan.metric, count=t.count or plan.task.count,
                         extra=t.extra, extra_learning_rates=t.extra_learning_rates, resume=plan.resume,
                         identity=t.identity, tracking=plan.tracking)

    trained_before = plan.resume and finished_phase(plan.run_dir, "student") is not None
    model, info = trained_phase(plan.run_dir, "student", student, plan.prepared.tokenizer, plan.resume,
                                lambda folder, role: plan.task.load_model(cfg, folder, role), run_training)
    _restore_attention(plan.attention)  # time and save the models as they were loaded
    if t.trains_teacher and max_steps is None:
        keep_trained_teacher(plan, trained_before)
    info["teacher_signal_seconds"] = plan.signal_seconds
    return model, info


def keep_trained_teacher(plan: Plan, trained_before: bool) -> None:
    """After online distillation, the teacher trained in the student's loop is the run's teacher: frozen again,
    saved as `teacher/` (what the report measures, and `bench` reads), or loaded from there when the student
    phase had finished before this resume (`trained_before`)."""
    teacher, folder = plan.teacher, plan.run_dir / "teacher"
    teacher.model.eval().requires_grad_(False)
    if trained_before:
        if finished_phase(plan.run_dir, "teacher") is None:
            raise TextDistillError(f"{plan.run_dir}: the student phase finished but the teacher trained with it was "
                                   "not saved; start the run over with --overwrite")
        load_weights(teacher.model, folder / "model.safetensors")
    elif is_main():
        save_model(teacher.model, teacher.tokenizer, folder)
        mark_finished(plan.run_dir, "teacher", ["teacher/model.safetensors"], {})
    wait_for_everyone()
    teacher.folder = folder


def teacher_against_baseline(plan: Plan, baseline: dict) -> dict | None:
    """The teacher's validation score beside the best the same student reached alone; a warning when the
    teacher is no better (distillation then passes on a teacher's errors, not its knowledge)."""
    if plan.training.evaluate_teacher is None or plan.training.trains_teacher or baseline.get("best_score") is None:
        return None  # (a teacher trained in the student's loop is judged after it)
    metric = plan.metric
    teacher_score = plan.training.evaluate_teacher()[metric]
    check = {"metric": metric, "teacher": teacher_score, "baseline": baseline["best_score"]}
    if teacher_score <= baseline["best_score"]:
        log.warning("the teacher (validation %s %.4f) is no better than the same student trained alone (%.4f): "
                    "distilling it will not beat the baseline. Train the teacher further (teacher.finetune, "
                    "teacher.learning_rates with teacher.ensemble_trials), or use a stronger one (teacher.base, "
                    "teacher.path)",
                    metric, teacher_score, baseline["best_score"])
    return check


def train_baseline(plan: Plan) -> tuple[torch.nn.Module, dict]:
    """The no-teacher baseline: the student's initial weights and step budget, gold labels only."""
    cfg, t = plan.cfg, plan.training
    baseline = plan.prepared.rebuild()
    return trained_phase(
        plan.run_dir, "baseline", baseline, plan.prepared.tokenizer, plan.resume,
        lambda folder, role: plan.task.load_model(cfg, folder, role),
        lambda: train(baseline, t.baseline_data, label_objective(), plan.baseline_train, name="baseline",
                      run_dir=plan.run_dir, evaluate=t.evaluate, metric=plan.metric, count=plan.task.count,
                      resume=plan.resume, identity=t.baseline_identity, tracking=plan.tracking))


def evaluate_and_report(plan: Plan, models: dict[str, torch.nn.Module], runs: dict[str, dict], seconds: float,
                        sweep: dict | None) -> dict:
    """Test metrics and speed of every model, sizes, the export check; summary.json and the report."""
    cfg, run_dir, teacher = plan.cfg, plan.run_dir, plan.teacher
    results, task_entries = plan.task.test_results(cfg, models, plan.prepared, teacher)
    folders = {"teacher": teacher.folder, "student": run_dir / "student", "baseline": run_dir / "baseline"}
    for name, m in models.items():
        results[name]["parameters"] = count_parameters(m)
        results[name]["disk_bytes"] = folder_weights_bytes(folders[name])
        if name in runs:
            results[name]["train_seconds"] = runs[name]["seconds"]
    if "train_seconds" in teacher.info:
        results["teacher"]["train_seconds"] = teacher.info["train_seconds"]
    export = check_saved_student(run_dir / "student", models["student"], plan.task.probe_batch(plan.prepared),
                                 lambda folder: plan.task.load_model(cfg, folder, "student export"))
    summary: dict[str, Any] = {
        "task": cfg.task,
        "dataset": cfg.data.dataset or cfg.data.train,
        "sizes": plan.training.sizes,
        "teacher": {"path": str(teacher.folder), **teacher.info},
        "student_config": to_dict(cfg.student),
        "loss": to_dict(cfg.loss),
        **plan.prepared.summary,
        "results": results,
        "runs": {k: {kk: v for kk, v in r.items() if kk != "history"} for k, r in runs.items()},
        "export": export,
        **({"teacher_check": plan.teacher_check} if plan.teacher_check else {}),
        "wall_seconds": seconds,
        **_training_entries(plan.training.summary, runs),
        **task_entries,
        **({"sweep": sweep} if sweep else {}),
    }
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir, summary)
    mark_finished(run_dir, "report", ["summary.json"], {})
    # the measured part of the summary (the config went in at the start), at the student's last step
    plan.tracking.log(flat_numbers({k: summary[k] for k in ("results", "runs", "sizes", "wall_seconds", "teachers")
                                    if k in summary}), step=runs["student"]["steps"])
    return summary


def _training_entries(entries: dict, runs: dict[str, dict]) -> dict:
    """The task's entries about how the student trained; an online run's cost is the student phase's wall time,
    in which every model trained in the loop (teacher, peers) ran forward and backward at every step."""
    if "online" in entries and "student" in runs:
        entries = {**entries, "online": {**entries["online"], "train_seconds": runs["student"]["seconds"]}}
    return entries


def _attention_implementations(*models: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    return [(m, m.config._attn_implementation) for m in models]


def _restore_attention(implementations: list[tuple[torch.nn.Module, str]]) -> None:
    """An objective may switch models to eager attention (attention matching needs the probabilities)."""
    for m, impl in implementations:
        if m.config._attn_implementation != impl and hasattr(m, "set_attn_implementation"):
            m.set_attn_implementation(impl)
