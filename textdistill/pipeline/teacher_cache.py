"""Teachers made here (a classifier fine-tuned from a base, an encoder-decoder trained from scratch), for
every task: trained once, cached under a key of everything that determines their weights, reused after.

A made teacher is a plain Hugging Face folder plus `textdistill_teacher.json` (how it was made, and the
sha256 of its weights), written last, so its presence marks a complete teacher. Training runs in
`<folder>.work` on every process (data parallelism); the main process alone writes. A training that was
stopped (Ctrl-C, a killed process) continues from its newest sound checkpoint there on the next run that wants
the same teacher: the key fixes everything that trains it. A cached teacher
whose weights no longer match their recorded checksum (a truncated copy, a disk error) is never loaded:
it is trained again.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from textdistill.atomic import write_json
from textdistill.hashing import digest_problem, file_digest
from textdistill.locking import wait_lock
from textdistill.ownership import OwnedFolder, owned_work_folder, remove_owned
from textdistill.pipeline.runs import on_main_process, save_model
from textdistill.training.checkpoints import resume_problem
from textdistill.training.distributed import is_main, wait_for_everyone
from textdistill.training.stopping import Interrupted

log = logging.getLogger("textdistill")
TEACHER_INFO = "textdistill_teacher.json"

# `train(work, resume)` trains a teacher with its checkpoints in the folder `work` (continuing from the newest
# one with `resume`), on every process, and returns the model, its tokenizer and what to record about it.
TrainTeacher = Callable[[Path, bool], tuple[torch.nn.Module, object, dict]]
TRAINING_NAME = "teacher"  # the name the teachers' trainings give the loop (their checkpoints' prefix)


def cached_teacher(folder: Path, train: TrainTeacher) -> tuple[Path, dict]:
    """The teacher in `folder` (under the cache root): reused when sound, else trained by `train` and saved;
    a stopped training of it is continued.

    Returns the folder and its info, with `cached` saying whether it was reused. One process makes a given
    teacher: another run wanting it waits for the key's lock, then reuses what the first one saved.
    """
    lock = wait_lock(folder.with_name(folder.name + ".lock"), f"the teacher {folder}") if is_main() else None
    try:
        return _cached_teacher(folder, train)
    finally:
        if lock is not None:
            lock.release()


def _cached_teacher(folder: Path, train: TrainTeacher) -> tuple[Path, dict]:
    wait_for_everyone()  # the other processes look once the main one holds the lock
    info_path = folder / TEACHER_INFO
    if info_path.is_file():
        info = _cached_info(info_path)
        problem = digest_problem(folder, {"model.safetensors": info.get("weights_sha256", "")}) if info else \
            f"{TEACHER_INFO} is unreadable"
        if problem is None:
            log.info("teacher: using the cached teacher %s", folder)
            return folder, {**info, "cached": True}
        log.warning("cached teacher %s is unusable (%s); training it again", folder, problem)
        wait_for_everyone()  # every process has read the info file before it is replaced
        if is_main():
            info_path.unlink()
    started = time.perf_counter()
    try:
        info = train_teacher_into(folder, train, _can_continue(folder.with_name(folder.name + ".work")), started)
    except Interrupted as stopped:  # the cache continues it by itself: no --resume needed
        raise stopped.with_hint("the next run that wants this teacher continues from it") from None
    return folder, {**info, "cached": False}


def _can_continue(work: Path) -> bool:
    """Whether a stopped training in `work` can be continued; one that cannot (no sound checkpoint, another
    version's checkpoint format) is started again, with a warning, since nothing else will ever use it."""
    if not work.is_dir():
        return False
    # the main process decides: it empties the folder before the others look (train_teacher_into), so they
    # find no checkpoint to continue from when it starts again; the loop logs the checkpoint it continues from
    problem = resume_problem(work / "checkpoints", TRAINING_NAME) if is_main() else None
    if problem is not None:
        log.warning("the stopped training in %s cannot be continued (%s); starting it again", work, problem)
    return problem is None


def train_teacher_into(folder: Path, train: TrainTeacher, resume: bool = False, started: float | None = None) -> dict:
    """Train a teacher (`train`, in `<folder>.work`) and save it to `folder`: weights, tokenizer, its training
    log, and, last, its info with the weights' checksum. With `resume`, an interrupted training continues
    from its last checkpoint in the work folder."""
    started = time.perf_counter() if started is None else started
    work = folder.with_name(folder.name + ".work")
    if is_main():
        owned_work_folder(work, "teacher", keep=resume)  # replaced only if textdistill made it
    wait_for_everyone()
    model, tokenizer, info = train(work, resume)
    if is_main():
        save_model(model, tokenizer, folder)
        if (work / "metrics.jsonl").is_file():
            shutil.copy(work / "metrics.jsonl", folder / "metrics.jsonl")
    wait_for_everyone()
    info = {**info, "weights_sha256": file_digest(folder / "model.safetensors"),
            "wall_seconds": time.perf_counter() - started}
    if is_main():
        write_json(folder / TEACHER_INFO, info)  # written last: its presence marks a complete teacher
        remove_owned(work)
    wait_for_everyone()
    return info


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


def open_teacher_folder(out_dir: Path, overwrite: bool, inputs: list) -> OwnedFolder:
    """The `teacher --output` folder, locked; it replaces only a teacher folder of ours, and only with
    `overwrite` (`textdistill.ownership`)."""
    return on_main_process(lambda: OwnedFolder.open(out_dir, "teacher", overwrite=overwrite, inputs=inputs,
                                                    option="--output", command="teacher"),
                           lambda: OwnedFolder.passive(out_dir), out_dir)
