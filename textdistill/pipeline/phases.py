"""Phases of a run. A finished phase leaves its outputs and a marker, so `--resume` skips it.

The marker `phases/<name>.json` holds the sha256 of each output file and what the phase reports
(training time, steps, ...). A phase whose outputs are missing or no longer match is run again;
the phase in progress continues from its last training checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from textdistill.atomic import write_json
from textdistill.pipeline.runs import inside_run
from textdistill.hashing import digest_problem, file_digest

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
