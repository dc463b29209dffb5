"""Training checkpoints: the best weights so far, and resumable checkpoints with everything the loop needs to
go on as if it had never stopped.

A checkpoint is the folder `checkpoints/<name>-step<NNNNNNNN>/` holding
    model.safetensors     the trained model's weights
    extra.safetensors     extra trained modules (e.g. projection layers), if any
    best.safetensors      the best weights so far by the validation metric, if any
    optimizer.pt          optimizer, scheduler and gradient-scaler state (loaded with weights_only=True)
    rng-<process>.json    random states of python, numpy, torch (and CUDA), one file per process
    state.json            step, best score and step, early-stopping count, running loss, elapsed time,
                          the train settings and the identity of the data (teacher outputs) trained on
    config.yaml           the run's resolved config
    manifest.json         the sha256 of every file above, written last.
It is written into a hidden `.partial` folder and renamed into place, so a reader finds a complete
checkpoint or none; one whose files do not match its manifest is never loaded. The data order is a
pure function of (seed, epoch), so the step alone fixes the position in the data.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import pickle
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from textdistill.config import TrainConfig
from textdistill.errors import TextDistillError
from textdistill.atomic import atomic_write, fsync_dir, fsync_file, usual_permissions
from textdistill.hashing import digest_problem, file_digest

log = logging.getLogger("textdistill")
FORMAT = 1
REQUIRED = ("model.safetensors", "optimizer.pt", "state.json", "rng-0.json")
# Settings that do not change the weights a run produces; they may differ on resume.
COSMETIC = ("progress", "threads", "checkpoint_every", "keep_checkpoints", "report_to")


@dataclass
class Progress:
    """What the loop has done so far; saved in every checkpoint."""

    step: int = 0
    seconds: float = 0.0
    best_score: float | None = None
    best_step: int = 0
    since_best: int = 0
    finished: bool = False
    running: dict[str, float] = field(default_factory=dict)  # loss sums since the last metrics line


def check_name(name: str) -> str:
    """A training's name becomes file names in the run folder: plain words only, so none leads outside it."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_]*", name):
        raise TextDistillError(
            f"training name {name!r} must be letters, digits and '_' (it names files in the run folder)"
        )
    return name


def checkpoint_name(name: str, step: int) -> str:
    return f"{check_name(name)}-step{step:08d}"


def list_checkpoints(root: Path, name: str) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints of `name`, oldest first."""
    pattern = re.compile(rf"^{re.escape(name)}-step(\d{{8}})$")
    found = []
    if root.is_dir():
        for path in root.iterdir():
            if (m := pattern.match(path.name)) and path.is_dir():
                found.append((int(m.group(1)), path))
    return sorted(found)


def checkpoint_problem(folder: Path) -> str | None:
    """None for a complete checkpoint whose files match their checksums, else what is wrong."""
    try:
        digests = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "manifest.json is missing or unreadable (an interrupted write)"
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        return "manifest.json is malformed"
    missing = [f for f in REQUIRED if f not in digests]
    if missing:
        return f"the manifest lists no {missing[0]}"
    return digest_problem(folder, digests)


def newest_checkpoint(root: Path, name: str) -> Path | None:
    """The newest sound checkpoint of `name`; corrupt ones are skipped with a warning, never loaded."""
    bad = []
    for step, folder in reversed(list_checkpoints(root, name)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        bad.append(f"{folder.name}: {problem}")
        log.warning("skipping checkpoint %s: %s", folder, problem)
    if bad:
        raise TextDistillError(
            f"no sound checkpoint of {name!r} in {str(root)!r} ({'; '.join(bad)}); delete those folders to "
            "train this part again from the start, or start over with --overwrite"
        )
    return None


def save_checkpoint(root: Path, name: str, progress: Progress, *, accelerator, model, extra, optimizer, scheduler,
                    best_path: Path, cfg: TrainConfig, identity: dict, run_config: Path, keep: int) -> Path:
    """Write a checkpoint (every process calls this: gathering sharded weights and random states is collective)."""
    model_state = accelerator.get_state_dict(model)
    rng = gather_object([_rng_state()]) if accelerator.num_processes > 1 else [_rng_state()]
    final = root / checkpoint_name(name, progress.step)
    if accelerator.is_main_process:
        partial = root / f".{final.name}.partial"
        try:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            save_file(state_on_cpu(model_state), str(partial / "model.safetensors"))
            if extra is not None:
                save_file(state_on_cpu(extra.state_dict()), str(partial / "extra.safetensors"))
            if best_path.is_file():
                _link_or_copy(best_path, partial / "best.safetensors")
            scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler},
                       partial / "optimizer.pt")
            for rank, state in enumerate(rng):
                (partial / f"rng-{rank}.json").write_text(json.dumps(state), encoding="utf-8")
            state = {"format": FORMAT, "name": name, "processes": len(rng), "progress": dataclasses.asdict(progress),
                     "train_config": dataclasses.asdict(cfg), "identity": identity}
            (partial / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
            if run_config.is_file():
                shutil.copyfile(run_config, partial / "config.yaml")
            usual_permissions(partial)
            digests = {}
            for f in sorted(partial.iterdir()):
                fsync_file(f)
                digests[f.name] = file_digest(f)
            (partial / "manifest.json").write_text(json.dumps(digests, indent=1), encoding="utf-8")
            fsync_file(partial / "manifest.json")
            _replace_folder(partial, final)
        except (OSError, SafetensorError) as e:
            shutil.rmtree(partial, ignore_errors=True)
            previous = [f.name for _, f in list_checkpoints(root, name)]
            kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
            reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
            raise TextDistillError(
                f"could not write checkpoint {str(final)!r} ({reason}); {kept}: free disk space or fix "
                "permissions, then continue with --resume"
            ) from None
        _prune(root, name, keep)
    accelerator.wait_for_everyone()
    return final


def resume_problem(root: Path, name: str) -> str | None:
    """Why the newest checkpoint of `name` under `root` cannot be resumed by this version, or None (also when
    there is none: training then starts from the beginning)."""
    try:
        found = newest_checkpoint(root, name)
    except TextDistillError as e:
        return str(e)
    if found is None:
        return None
    try:
        fmt = json.loads((found / "state.json").read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        return f"{found.name}/state.json is unreadable"
    return None if fmt == FORMAT else f"{found.name} has checkpoint format {fmt!r}, this version reads {FORMAT}"


def restore_checkpoint(folder: Path, *, accelerator, model, extra, optimizer, scheduler, best_path: Path,
                       cfg: TrainConfig, identity: dict) -> Progress:
    """Load a checkpoint written by `save_checkpoint` into the loop's objects; return its progress."""
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    if state.get("format") != FORMAT:
        raise TextDistillError(f"checkpoint {str(folder)!r} has format {state.get('format')!r}, this version "
                               f"reads {FORMAT}; resume with the version that wrote it or start over with --overwrite")
    _check_same_settings(folder, state["train_config"], dataclasses.asdict(cfg))
    if state["identity"] != identity:
        raise TextDistillError(
            f"checkpoint {str(folder)!r} was trained on different data or teacher outputs than this run has now; "
            "resume with the same data and teacher, or start over with --overwrite"
        )
    # read everything before changing anything, so a bad file leaves the loop's objects untouched
    weights = load_file(str(folder / "model.safetensors"))
    extra_weights = load_file(str(folder / "extra.safetensors")) if (folder / "extra.safetensors").is_file() else None
    if (extra is None) != (extra_weights is None):
        raise TextDistillError(f"checkpoint {str(folder)!r} and this run differ in extra trained modules "
                               "(projection layers); resume with the run's own settings or start over with --overwrite")
    try:
        # weights_only: tensors, numbers and containers only; a pickled object that would run code is refused
        saved = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise TextDistillError(
            f"checkpoint {str(folder)!r}: optimizer.pt holds objects other than tensors and numbers and is not "
            "loaded (it could run code); delete that checkpoint folder"
        ) from None
    accelerator.unwrap_model(model).load_state_dict(weights)
    if extra is not None:
        extra.load_state_dict(extra_weights)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if accelerator.scaler is not None and saved["scaler"] is not None:
        accelerator.scaler.load_state_dict(saved["scaler"])
    if state["processes"] != accelerator.num_processes:
        log.warning("checkpoint %s was written by %d processes, resumed on %d: the result is equivalent but not "
                    "bit-identical to an uninterrupted run", folder.name, state["processes"], accelerator.num_processes)
    rank = accelerator.process_index if accelerator.process_index < state["processes"] else 0
    _set_rng_state(json.loads((folder / f"rng-{rank}.json").read_text(encoding="utf-8")))
    if accelerator.is_main_process:
        # the best weights as they were at this checkpoint: a later best from the lost steps is recomputed
        if (folder / "best.safetensors").is_file():
            atomic_write(best_path, lambda tmp: shutil.copyfile(folder / "best.safetensors", tmp))
        elif best_path.exists():
            best_path.unlink()
    accelerator.wait_for_everyone()
    return Progress(**state["progress"])


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    atomic_write(path, lambda tmp: save_file(state_on_cpu(model.state_dict()), str(tmp)))


def state_on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies; a tensor sharing storage with an earlier one (tied LM head and embedding) is
    cloned, since safetensors refuses shared memory. Loading fills both names, which stay tied."""
    out, seen = {}, set()
    for k, v in state.items():
        t = v.detach().contiguous().cpu()
        ptr = t.untyped_storage().data_ptr()
        out[k] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return out


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    model.load_state_dict(load_file(str(path)))


def remove_checkpoints(root: Path, name: str) -> None:
    """Delete the checkpoints of a training whose result is saved: a finished phase is never resumed."""
    for _, folder in list_checkpoints(root, name):
        shutil.rmtree(folder, ignore_errors=True)
    (root / f"{check_name(name)}-best.safetensors").unlink(missing_ok=True)


def _check_same_settings(folder: Path, saved: dict, now: dict) -> None:
    changed = [k for k in saved if k not in COSMETIC and saved[k] != now.get(k)]
    if changed:
        k = changed[0]
        raise TextDistillError(
            f"checkpoint {str(folder)!r} was trained with {k}={saved[k]!r}, this run has {k}={now.get(k)!r}; "
            "resume with the run's own settings (leave out --config to reuse its config.yaml) or start over "
            "with --overwrite"
        )


def _replace_folder(partial: Path, final: Path) -> None:
    """Rename `partial` to `final`; an existing `final` (the same step saved again) is moved aside first."""
    aside = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(final, aside)
    os.rename(partial, final)
    fsync_dir(final.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _prune(root: Path, name: str, keep: int) -> None:
    for _, folder in list_checkpoints(root, name)[:-keep]:
        try:
            shutil.rmtree(folder)
        except OSError as e:
            log.warning("could not delete old checkpoint %s (%s)", folder, e.strerror or e)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link costs no space; the best-weights file is replaced by rename, so the link keeps its content."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _rng_state() -> dict:
    def b64(t: torch.Tensor) -> str:
        return base64.b64encode(t.numpy().tobytes()).decode("ascii")

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensor(s) for s in state["cuda"]])


def keep_metrics_until(path: Path, name: str, step: int) -> list[dict]:
    """Drop the lines of run `name` after `step` from metrics.jsonl; return the lines of `name` kept.

    A resumed run writes again the lines of the steps it repeats, so the file has no duplicates; a line
    cut short by a kill is dropped too.
    """
    if not path.is_file():
        return []
    kept, history = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("run") == name:
            if entry.get("step", 0) > step:
                continue
            history.append(entry)
        kept.append(line)
    atomic_write(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8"))
    return history
