"""Fine-tuning a teacher classifier, and the cached built-in teacher."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

from textdistill.cache import cache_root
from textdistill.config import RunConfig, TrainConfig
from textdistill.data.classification import ClassificationData, load_classification_data
from textdistill.evaluation.metrics import classification_metrics
from textdistill.evaluation.predict import predict_logits
from textdistill.locking import wait_lock
from textdistill.models.loading import load_classifier, load_tokenizer, resolve_model_dir
from textdistill.ownership import OwnedFolder, owned_work_folder, remove_owned
from textdistill.pipeline.runs import encode_splits, on_main_process, save_model, write_json
from textdistill.training.checkpoint import digest_problem, file_digest
from textdistill.training.distributed import is_main, wait_for_everyone
from textdistill.training.loop import train
from textdistill.training.objectives import label_objective

log = logging.getLogger("textdistill")
TEACHER_INFO = "textdistill_teacher.json"
# Bump when the fine-tuning recipe changes in a way that changes the weights it produces.
RECIPE_VERSION = 1


def teacher_cache_key(cfg: RunConfig, data: ClassificationData) -> str:
    """Hash of everything that determines the fine-tuned weights: base model, data, settings, recipe."""
    base = resolve_model_dir(cfg.teacher.base, "teacher.base")
    # Only settings that differ from the defaults enter the key, so adding a new option (at its
    # default) to TrainConfig does not invalidate every cached teacher; RECIPE_VERSION covers changes
    # of the defaults themselves. Display and thread settings do not change the weights.
    defaults = dataclasses.asdict(TrainConfig())
    # Options added after recipe 1 whose fine-tuning default reproduces recipe 1 (float32, the model's
    # own dropout) stay out of the key too, so teachers cached before they existed remain valid.
    recipe1 = {"mixed_precision": "no", "dropout": None}
    finetune = {k: v for k, v in dataclasses.asdict(cfg.teacher.finetune).items()
                if k not in ("progress", "threads") and v != recipe1.get(k, defaults[k])}
    h = hashlib.sha256()
    for f in sorted(base.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".txt", ".safetensors", ".bin", ".model")):
            h.update(f.name.encode())
            h.update(file_digest(f).encode())
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


def fine_tune_teacher(cfg: RunConfig, data: ClassificationData, out_dir: Path, resume: bool = False) -> dict:
    """Fine-tune `cfg.teacher.base` on the labelled data; save a Hugging Face folder at `out_dir`.

    Training runs in `<out_dir>.work`; with `resume`, an interrupted fine-tuning continues from its
    last checkpoint there.
    """
    base = resolve_model_dir(cfg.teacher.base, "teacher.base")
    tokenizer = load_tokenizer(base, "teacher.base", cfg.trust_remote_code)
    model = load_classifier(base, "teacher.base", data.label_names, cfg.trust_remote_code)
    model_max = getattr(model.config, "max_position_embeddings", None)
    splits = encode_splits(tokenizer, data, cfg.data.max_length, model_max)
    work = out_dir.with_name(out_dir.name + ".work")
    if is_main():
        owned_work_folder(work, "teacher", keep=resume)
    wait_for_everyone()

    def evaluate(m):
        logits = predict_logits(m, splits.validation, cfg.teacher.batch_size)
        return classification_metrics(logits.argmax(-1), splits.validation.labels, data.label_names)

    result = train(model, splits.train, label_objective(), cfg.teacher.finetune, name="teacher", run_dir=work,
                   evaluate=evaluate, resume=resume)
    test_logits = predict_logits(model, splits.test, cfg.teacher.batch_size)
    test = classification_metrics(test_logits.argmax(-1), splits.test.labels, data.label_names)
    info = {
        "base": str(base),
        "train_seconds": result.seconds,
        "steps": result.steps,
        "validation_accuracy": result.best_score,
        "test_accuracy": test["accuracy"],
        "label_names": data.label_names,
    }
    if is_main():
        save_model(model, tokenizer, out_dir)
        info["weights_sha256"] = file_digest(out_dir / "model.safetensors")
        shutil.copy(work / "metrics.jsonl", out_dir / "metrics.jsonl")
        write_json(out_dir / TEACHER_INFO, info)  # written last: its presence marks a complete teacher
        remove_owned(work)
        log.info("teacher: test accuracy %.4f after %.0f s", test["accuracy"], result.seconds)
    wait_for_everyone()
    return info


def builtin_teacher(cfg: RunConfig, data: ClassificationData, resume: bool = False) -> tuple[Path, dict]:
    """The fine-tuned built-in teacher for this data, trained once and cached under a content key.

    A cached teacher whose weights no longer match the checksum recorded with them (a truncated copy,
    a disk error) is never loaded: it is fine-tuned again.
    """
    key = teacher_cache_key(cfg, data)
    folder = cache_root() / "teachers" / key
    # one process fine-tunes a given teacher; another run wanting it waits, then reads the cached copy
    lock = wait_lock(folder.with_name(key + ".lock"), f"the teacher {folder}") if is_main() else None
    try:
        return _builtin_teacher(cfg, data, folder, resume)
    finally:
        if lock is not None:
            lock.release()


def _builtin_teacher(cfg: RunConfig, data: ClassificationData, folder: Path, resume: bool) -> tuple[Path, dict]:
    wait_for_everyone()  # the other processes look once the main one holds the lock
    info_path = folder / TEACHER_INFO
    if info_path.is_file():
        info = _cached_info(info_path)
        problem = digest_problem(folder, {"model.safetensors": info.get("weights_sha256", "")}) if info else \
            f"{TEACHER_INFO} is unreadable"
        if problem is None:
            log.info("teacher: using cached fine-tuned teacher %s", folder)
            return folder, {**info, "cached": True}
        log.warning("cached teacher %s is unusable (%s); fine-tuning it again", folder, problem)
        wait_for_everyone()  # every process has read the info file before it is replaced
        if is_main():
            info_path.unlink()
    log.info("teacher: fine-tuning %s on the training data (cached afterwards at %s)", cfg.teacher.base, folder)
    started = time.perf_counter()
    info = fine_tune_teacher(cfg, data, folder, resume=resume)
    info["wall_seconds"] = time.perf_counter() - started
    return folder, {**info, "cached": False}


def _cached_info(info_path: Path) -> dict | None:
    """The cached teacher's info; one cached by a version that recorded no checksum gets it now."""
    if is_main():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            if isinstance(info, dict) and "weights_sha256" not in info:
                info["weights_sha256"] = file_digest(info_path.parent / "model.safetensors")
                write_json(info_path, info)
        except (OSError, ValueError):
            pass
    wait_for_everyone()
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def run_teacher(cfg: RunConfig, output: str | Path | None = None, overwrite: bool = False) -> dict:
    """CLI `teacher`: fine-tune a teacher on the configured data into `output` (default: <output_dir>/teacher).

    An existing folder is replaced only with `overwrite`, and only if it is a teacher textdistill wrote."""
    data = load_classification_data(cfg.data)
    resolve_model_dir(cfg.teacher.base, "teacher.base")
    out_dir = Path(output).expanduser() if output else Path(cfg.output_dir).expanduser() / "teacher"
    with open_teacher_folder(cfg, out_dir, overwrite) as folder:
        info = fine_tune_teacher(cfg, data, folder.path)
    return {"teacher": str(out_dir), **info}


def open_teacher_folder(cfg: RunConfig, out_dir: Path, overwrite: bool) -> OwnedFolder:
    """The `teacher --output` folder, locked; replacing only a teacher folder of ours, with `overwrite`."""
    inputs = [p for p in (cfg.teacher.base, cfg.data.train, cfg.data.validation, cfg.data.test) if p]
    return on_main_process(lambda: OwnedFolder.open(out_dir, "teacher", overwrite=overwrite, inputs=inputs,
                                                    option="--output", command="teacher"),
                           lambda: OwnedFolder.passive(out_dir), out_dir)
