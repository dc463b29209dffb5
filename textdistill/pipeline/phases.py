"""Phases of a run. A finished phase leaves its outputs and a marker, so `--resume` skips it.

The marker `phases/<name>.json` holds the sha256 of each output file and what the phase reports
(training time, steps, ...). A phase whose outputs are missing or no longer match is run again;
the phase in progress continues from its last training checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from textdistill.atomic import write_json
from textdistill.hashing import digest_problem, file_digest
from textdistill.pipeline.runs import inside_run, save_model
from textdistill.training.checkpoints import remove_checkpoints
from textdistill.training.distributed import is_main, wait_for_everyone
from textdistill.training.loop import TrainResult

log = logging.getLogger("textdistill")


def finished_phase(run_dir: Path, name: str) -> dict | None:
    """What the finished phase `name` reported, or None when it has not finished (or its outputs changed)."""
    marker = inside_run(run_dir, f"phases/{name}.json", "phase")
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(done, dict) or not isinstance(done.get("files"), dict):
        return None
    problem = digest_problem(run_dir, done["files"])
    if problem is not None:
        log.warning("phase %s will run again: %s", name, problem)
        return None
    return done.get("info", {})


def mark_finished(run_dir: Path, name: str, files: list[str], info: dict) -> None:
    """Record that phase `name` is done; `files` (relative to the run folder) are checked on resume."""
    digests = {f: file_digest(inside_run(run_dir, f, "phase output")) for f in files}
    write_json(inside_run(run_dir, f"phases/{name}.json", "phase"), {"files": digests, "info": info})


def trained_phase(run_dir: Path, name: str, model: torch.nn.Module, tokenizer, resume: bool,
                  load: Callable[[Path, str], torch.nn.Module], run_training: Callable[[], TrainResult]
                  ) -> tuple[torch.nn.Module, dict]:
    """A training phase (the student, the baseline): `run_training()` trains `model` in place on every
    process, then the main process saves it to `run_dir/name` and marks the phase finished.

    Resuming a run in which this phase had finished loads the saved model (`load(folder, name)`) and its
    result instead.
    """
    done = finished_phase(run_dir, name) if resume else None
    if done is not None:
        log.info("%s: already trained, loading %s", name, run_dir / name)
        return load(run_dir / name, name), done
    info = dataclasses.asdict(run_training())
    if is_main():
        save_model(model, tokenizer, run_dir / name)
        mark_finished(run_dir, name, [f"{name}/model.safetensors"], info)
        remove_checkpoints(run_dir / "checkpoints", name)  # the saved model replaces them
    wait_for_everyone()
    return model, info
