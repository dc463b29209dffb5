"""The classification teacher made here: `teacher.base` fine-tuned on the run's data (`teacher.path: builtin`,
cached by `teacher_cache.py`), or into a folder by `textdistill teacher`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from textdistill.cache import cache_root
from textdistill.config import RunConfig, replaced
from textdistill.schema import TeacherConfig
from textdistill.data.labelled import ClassificationData, encode_splits, load_classification_data
from textdistill.evaluation.metrics import classification_metrics
from textdistill.evaluation.predict import predict_logits
from textdistill.models.loading import load_classifier, load_tokenizer, resolve_model_dir
from textdistill.pipeline.teacher_cache import (TEACHER_INFO, TRAINING_NAME, cached_teacher, open_teacher_folder,
                                                train_teacher_into)
from textdistill.hashing import update_with_folder
from textdistill.training.loop import train
from textdistill.training.objectives import label_objective

log = logging.getLogger("textdistill")
# Bump when the fine-tuning recipe changes in a way that changes the weights it produces.
# 2: trained until validation stops improving (early stopping, best checkpoint kept), not one fixed epoch.
RECIPE_VERSION = 2
# Settings that do not change the fine-tuned weights.
COSMETIC = ("progress", "threads", "checkpoint_every", "keep_checkpoints")


def teacher_cache_key(cfg: RunConfig, data: ClassificationData) -> str:
    """Hash of everything that determines the fine-tuned weights: base model, data, settings, recipe."""
    base = resolve_model_dir(cfg.teacher.base, "teacher.base")
    # Only settings that differ from the teacher's defaults enter the key, so adding a new option (at its
    # default) does not invalidate every cached teacher; RECIPE_VERSION covers changes of the defaults.
    defaults = dataclasses.asdict(TeacherConfig().finetune)
    finetune = {k: v for k, v in dataclasses.asdict(cfg.teacher.finetune).items()
                if k not in COSMETIC and v != defaults[k]}
    h = hashlib.sha256()
    update_with_folder(h, base)
    payload = {
        "recipe": RECIPE_VERSION,
        "finetune": finetune,
        "max_length": cfg.data.max_length,
        "labels": data.label_names,
        "train": [data.train.texts, data.train.pairs, data.train.labels],
        "validation": [data.validation.texts, data.validation.pairs, data.validation.labels],
    }
    h.update(json.dumps(payload, sort_keys=True).encode())
    return h.hexdigest()[:20]


def fine_tune(cfg: RunConfig, data: ClassificationData, warn: bool = True):
    """`train(work)` for `teacher_cache.cached_teacher`: fine-tune `cfg.teacher.base` on the labelled data;
    `warn` says how many examples were truncated."""

    def train_teacher(work: Path, resume: bool):
        base = resolve_model_dir(cfg.teacher.base, "teacher.base")
        tokenizer = load_tokenizer(base, "teacher.base", cfg.trust_remote_code)
        model = load_classifier(base, "teacher.base", data.label_names, cfg.trust_remote_code,
                                cfg.teacher.finetune.seed)
        splits = encode_splits(tokenizer, data, cfg.data.max_length,
                               getattr(model.config, "max_position_embeddings", None), warn)

        def evaluate(m):
            logits = predict_logits(m, splits.validation, cfg.teacher.batch_size)
            return classification_metrics(logits.argmax(-1), splits.validation.labels, data.label_names)

        metric = cfg.teacher.finetune.select_on
        result = train(model, splits.train, label_objective(), cfg.teacher.finetune, name=TRAINING_NAME, run_dir=work,
                       evaluate=evaluate, metric=metric, resume=resume)
        curve = [e for e in result.history if e.get("split") == "validation"]
        kept = next((e for e in curve if e["step"] == result.best_step), None)
        test_logits = predict_logits(model, splits.test, cfg.teacher.batch_size)
        test = classification_metrics(test_logits.argmax(-1), splits.test.labels, data.label_names)
        log.info("teacher: test accuracy %.4f after %.0f s", test["accuracy"], result.seconds)
        return model, tokenizer, {
            "base": str(base), "train_seconds": result.seconds, "steps": result.steps, "best_step": result.best_step,
            "learning_rate": cfg.teacher.finetune.learning_rate, "selected_on": metric,
            "validation_score": result.best_score, "validation_accuracy": kept["accuracy"] if kept else None,
            "test_accuracy": test["accuracy"], "label_names": data.label_names,
            # where the teacher stopped improving, for the report
            "validation_curve": [{"step": e["step"], "epoch": e["epoch"], "accuracy": e["accuracy"],
                                  "macro_f1": e["macro_f1"]} for e in curve]}

    return train_teacher


def builtin_teacher(cfg: RunConfig, data: ClassificationData) -> tuple[Path, dict]:
    """The fine-tuned built-in teacher for this data, trained once and cached under a content key. A fine-tune
    that was stopped (Ctrl-C, a killed process) continues from its newest checkpoint in the cache on the next
    run that wants the same teacher, with or without `--resume`: the key fixes everything that trains it.

    With `teacher.learning_rates`, each rate is a fine-tuning of its own (cached like any other) and the one
    with the best validation score (`teacher.finetune.select_on`) is the teacher (the first on ties); its info
    lists every trial (with its folder: `teacher.ensemble_trials` makes the others extra teachers).
    """
    if not cfg.teacher.learning_rates:
        return _fine_tuned(cfg, data)
    trials = []
    for lr in cfg.teacher.learning_rates:
        log.info("teacher: learning-rate search, trial %g", lr)
        trials.append(_fine_tuned(replaced(cfg, {"teacher.finetune.learning_rate": lr}), data))
    folder, info = max(trials, key=lambda t: validation_score(t[1]))  # max keeps the first
    search = [{**{k: i.get(k) for k in ("learning_rate", "validation_accuracy", "steps", "train_seconds", "cached")},
               "selected_on": i.get("selected_on", "accuracy"), "validation_score": validation_score(i),
               "path": str(f)} for f, i in trials]
    log.info("teacher: learning rate %g kept (validation %s %.4f)", info["learning_rate"],
             info.get("selected_on", "accuracy"), validation_score(info))
    return folder, {**info, "search": search}


def validation_score(info: dict) -> float:
    """The best validation score of a fine-tuned teacher, by the metric it was selected on (teachers cached
    before `select_on` existed were selected on accuracy)."""
    score = info.get("validation_score", info.get("validation_accuracy"))
    return 0.0 if score is None else score


def _fine_tuned(cfg: RunConfig, data: ClassificationData) -> tuple[Path, dict]:
    folder = cache_root() / "teachers" / teacher_cache_key(cfg, data)
    if not (folder / TEACHER_INFO).is_file():
        log.info("teacher: fine-tuning %s on the training data until validation stops improving (cached afterwards "
                 "at %s; if stopped, the next run continues it)", cfg.teacher.base, folder)
    # quiet about truncation: the run tokenises the same splits with this tokenizer next and says it there
    return cached_teacher(folder, fine_tune(cfg, data, warn=False))


def run_teacher(cfg: RunConfig, output: str | Path | None = None, overwrite: bool = False) -> dict:
    """CLI `teacher`: fine-tune a teacher on the configured data into `output` (default: <output_dir>/teacher).

    An existing folder is replaced only with `overwrite`, and only if it is a teacher textdistill wrote."""
    data = load_classification_data(cfg.data)
    resolve_model_dir(cfg.teacher.base, "teacher.base")  # checked before an old teacher is touched
    out_dir = Path(output).expanduser() if output else Path(cfg.output_dir).expanduser() / "teacher"
    inputs = [p for p in (cfg.teacher.base, cfg.data.train, cfg.data.validation, cfg.data.test) if p]
    with open_teacher_folder(out_dir, overwrite, inputs) as folder:
        info = train_teacher_into(folder.path, fine_tune(cfg, data))
    return {"teacher": str(out_dir), **info}
