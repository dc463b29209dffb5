"""Run folders: created, continued or replaced safely; paths kept inside them; model folders saved whole."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError

from textdistill.config import RunConfig, load_config, save_config, to_dict
from textdistill.errors import TextDistillError
from textdistill.atomic import atomic_write, write_failed
from textdistill.training.distributed import is_main, wait_for_everyone
from textdistill.training.checkpoints import COSMETIC

log = logging.getLogger("textdistill")
MARKER = "config.yaml"


def prepare_run_dir(cfg: RunConfig, overwrite: bool, resume: bool = False) -> Path:
    """Create the run folder; an existing run is only replaced with `overwrite` or continued with `resume`.

    Every process checks, then the main process alone changes the folder (several processes of one run
    share it).
    """
    run_dir = Path(cfg.output_dir).expanduser()
    if overwrite and resume:
        raise TextDistillError("--overwrite and --resume contradict each other; pass one of them")
    exists = run_dir.exists() and any(run_dir.iterdir())
    if resume:
        if not is_run_folder(run_dir):
            raise TextDistillError(
                f"nothing to resume: {str(run_dir)!r} holds no textdistill run (no {MARKER}); start the run "
                "without --resume"
            )
        _check_same_config(run_dir, cfg)
    elif exists:
        if not overwrite:
            raise TextDistillError(
                f"run folder {str(run_dir)!r} already exists; pass --resume to continue it, --overwrite to "
                "replace it, or set another --output_dir"
            )
        if not is_run_folder(run_dir):
            raise TextDistillError(
                f"refusing to overwrite {str(run_dir)!r}: it is not a textdistill run folder (no {MARKER} "
                "written by textdistill); choose an empty or new --output_dir"
            )
    wait_for_everyone()  # every process has looked before the main one changes anything
    if is_main():
        try:
            if exists and not resume:
                shutil.rmtree(run_dir)
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_failed(run_dir, e) from None
        if not resume:
            atomic_write(run_dir / MARKER, lambda tmp: save_config(cfg, tmp))
    wait_for_everyone()
    return run_dir


def is_run_folder(folder: Path) -> bool:
    """A folder textdistill made: its config.yaml is a run configuration, not some other project's file."""
    try:
        saved = yaml.safe_load((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(saved, dict) and {"output_dir", "train", "student"} <= set(saved)


def _check_same_config(run_dir: Path, cfg: RunConfig) -> None:
    """A resumed run must be the run that was started: same settings except cosmetic ones."""
    saved = _flat(to_dict(load_config(run_dir / MARKER)))
    now = _flat(to_dict(cfg))
    changed = [k for k in now
               if saved.get(k) != now[k] and k != "output_dir" and k.rsplit(".", 1)[-1] not in COSMETIC]
    if changed:
        k = changed[0]
        raise TextDistillError(
            f"cannot resume {str(run_dir)!r}: it was started with {k}={saved.get(k)!r}, now {k}={now[k]!r}; "
            f"leave out --config and setting flags to reuse the run's {MARKER}, or start over with --overwrite"
        )


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def inside_run(run_dir: Path, relative: str | Path, option: str) -> Path:
    """`relative` resolved inside the run folder; a path leading outside it (.., absolute, symlink) is refused."""
    root = run_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path == root:
        raise TextDistillError(
            f"{option}: {str(relative)!r} leads outside the run folder {str(run_dir)!r}; give a name inside it"
        )
    return path


def apply_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def save_model(model: torch.nn.Module, tokenizer, folder: Path) -> None:
    """A plain Hugging Face folder: safetensors weights, config with label names, tokenizer."""
    tmp = folder.with_name(folder.name + ".partial")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failed(folder, e) from None
