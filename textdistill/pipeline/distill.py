"""`distill`: train a student from a teacher, a no-teacher baseline beside it, evaluate all three, report."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch

from textdistill.config import RunConfig
from textdistill.data.classification import load_classification_data
from textdistill.evaluation.metrics import classification_metrics
from textdistill.evaluation.predict import predict_logits
from textdistill.evaluation.speed import measure_speed
from textdistill.models.loading import (check_same_vocabulary, load_classifier, load_tokenizer,
                                        resolve_model_dir, teacher_label_order)
from textdistill.models.students import build_student, count_parameters
from textdistill.pipeline.runs import (apply_threads, concat, encode_splits, folder_weights_bytes, prepare_run_dir,
                                       save_model, write_json)
from textdistill.pipeline.teacher import builtin_teacher
from textdistill.report.render import write_report
from textdistill.training.loop import train
from textdistill.training.objectives import classification_objective, label_objective

log = logging.getLogger("textdistill")


def run_distill(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Run the whole recipe and return the summary that `report.md` is made from."""
    started = time.perf_counter()
    apply_threads(cfg.train.threads)
    run_dir = prepare_run_dir(cfg, overwrite)
    data = load_classification_data(cfg.data)

    if cfg.teacher.path == "builtin":
        teacher_dir, teacher_info = builtin_teacher(cfg, data)
    else:
        teacher_dir, teacher_info = resolve_model_dir(cfg.teacher.path, "teacher.path"), {}
    tokenizer = load_tokenizer(teacher_dir, "teacher")
    teacher = load_classifier(teacher_dir, "teacher.path")
    teacher.eval().requires_grad_(False)  # frozen: scored without gradients, never updated
    order = teacher_label_order(teacher, data.label_names)

    student = build_student(cfg.student, teacher, data.label_names, cfg.train.seed)
    student_tokenizer = tokenizer
    if cfg.student.init == "pretrained":
        student_tokenizer = load_tokenizer(Path(cfg.student.path), "student.path")
    check_same_vocabulary(tokenizer, student_tokenizer, student.get_input_embeddings().num_embeddings)
    model_max = min(getattr(m.config, "max_position_embeddings", 10**9) for m in (teacher, student))
    splits = encode_splits(tokenizer, data, cfg.data.max_length, model_max)

    # The teacher is frozen and in eval mode, so its logits are a pure function of the input: scoring
    # each training example once gives exactly what a call at every step would, at a fraction of the cost.
    scoring_start = time.perf_counter()
    for part in (splits.train, splits.unlabeled):
        if part is not None:
            part.teacher_logits = predict_logits(teacher, part, cfg.teacher.batch_size)[:, order]
    scoring_seconds = time.perf_counter() - scoring_start
    train_set = concat(splits.train, splits.unlabeled)

    def evaluate(m):
        logits = predict_logits(m, splits.validation, cfg.teacher.batch_size)
        return classification_metrics(logits.argmax(-1), splits.validation.labels, data.label_names)

    models: dict[str, torch.nn.Module] = {"teacher": teacher}
    runs: dict[str, dict] = {}
    student_result = train(student, train_set, classification_objective(cfg.loss), cfg.train, name="student",
                           run_dir=run_dir, evaluate=evaluate)
    save_model(student, student_tokenizer, run_dir / "student")
    models["student"] = student
    runs["student"] = dataclasses.asdict(student_result) | {"teacher_scoring_seconds": scoring_seconds}
    if cfg.report.baseline:
        # same architecture, same initial weights, same budget; gold labels only
        baseline = build_student(cfg.student, teacher, data.label_names, cfg.train.seed)
        baseline_result = train(baseline, splits.train, label_objective(), cfg.train, name="baseline",
                                run_dir=run_dir, evaluate=evaluate)
        save_model(baseline, student_tokenizer, run_dir / "baseline")
        models["baseline"] = baseline
        runs["baseline"] = dataclasses.asdict(baseline_result)

    test_logits = {name: predict_logits(m, splits.test, cfg.teacher.batch_size) for name, m in models.items()}
    test_logits["teacher"] = test_logits["teacher"][:, order]
    teacher_pred = test_logits["teacher"].argmax(-1)
    results = {}
    for name, logits in test_logits.items():
        results[name] = classification_metrics(logits.argmax(-1), splits.test.labels, data.label_names,
                                               None if name == "teacher" else teacher_pred)
    speed = measure_speed(models, splits.test, cfg.report.latency_examples, cfg.report.throughput_batches)
    folders = {"teacher": teacher_dir, "student": run_dir / "student", "baseline": run_dir / "baseline"}
    for name, m in models.items():
        results[name].update(speed[name])
        results[name]["parameters"] = count_parameters(m)
        results[name]["disk_bytes"] = folder_weights_bytes(folders[name])
        if name in runs:
            results[name]["train_seconds"] = runs[name]["seconds"]
    if "train_seconds" in teacher_info:
        results["teacher"]["train_seconds"] = teacher_info["train_seconds"]

    summary = {
        "task": cfg.task,
        "dataset": cfg.data.dataset or cfg.data.train,
        "label_names": data.label_names,
        "sizes": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test),
                  "unlabeled": len(splits.unlabeled) if splits.unlabeled else 0},
        "teacher": {"path": str(teacher_dir), **teacher_info},
        "student_config": dataclasses.asdict(cfg.student),
        "loss": dataclasses.asdict(cfg.loss),
        "results": results,
        "runs": {k: {kk: v for kk, v in r.items() if kk != "history"} for k, r in runs.items()},
        "wall_seconds": time.perf_counter() - started,
    }
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir, summary)
    return summary
