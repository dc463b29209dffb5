"""Run folders: created, continued or replaced safely; paths kept inside them; model folders saved whole."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError

from textdistill.atomic import atomic_write, usual_permissions, write_failed
from textdistill.config import RunConfig, load_config, save_config, to_dict
from textdistill.errors import TextDistillError
from textdistill.ownership import OwnedFolder, carry_ownership
from textdistill.training.checkpoints import COSMETIC
from textdistill.training.distributed import is_main, process_state, share_from_main, wait_for_everyone

log = logging.getLogger("textdistill")
CONFIG = "config.yaml"  # the resolved config; what --resume continues


def open_run_folder(cfg: RunConfig, overwrite: bool, resume: bool = False, *, command: str = "distill",
                    may_replace=None) -> OwnedFolder:
    """The run folder, locked for this run's life: created, continued (`resume`), or replacing an earlier run of
    ours (`overwrite`; the old run is deleted at `.started()`, put back if the run fails before that).

    Call it after the new config and data have been checked, and use it as a context manager. With several
    processes, the main one alone creates, moves and locks; the others get a passive handle once it has.
    """
    run_dir = Path(cfg.output_dir).expanduser()
    if overwrite and resume:
        raise TextDistillError("--overwrite and --resume contradict each other; pass one of them")
    if resume:
        if not is_run_folder(run_dir):
            raise TextDistillError(
                f"nothing to resume: {str(run_dir)!r} holds no textdistill run (no {CONFIG}); start the run "
                "without --resume"
            )
        _check_same_config(run_dir, cfg)

    def create() -> OwnedFolder:
        folder = OwnedFolder.open(run_dir, "run", overwrite=overwrite, resume=resume, inputs=input_paths(cfg),
                                  command=command, may_replace=may_replace)
        try:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            if not resume:
                atomic_write(run_dir / CONFIG, lambda tmp: save_config(cfg, tmp))
        except (OSError, TextDistillError) as e:
            folder.abandon()
            raise e if isinstance(e, TextDistillError) else write_failed(run_dir, e) from None
        return folder

    return on_main_process(create, lambda: OwnedFolder.passive(run_dir), run_dir)


def on_main_process(create, passive, path: Path):
    """`create()` on the main process, `passive()` on the others once it succeeded; if it failed, every
    process stops (the main one with its own message)."""
    wait_for_everyone()  # every process has read the folder before the main one changes it
    result, ok = None, True
    if is_main():
        try:
            result = create()
        except BaseException:
            ok = False
            if process_state().num_processes == 1:
                raise
            share_from_main(torch.tensor([0]))
            raise
    if process_state().num_processes > 1:
        ok = bool(share_from_main(torch.tensor([1 if ok else 0]))[0])
    if not is_main():
        if not ok:
            raise TextDistillError(f"the main process could not prepare {str(path)!r}; see its error")
        result = passive()
    return result


def input_paths(cfg: RunConfig) -> list[str]:
    """Files and folders a run reads: never to be replaced with its run folder (nor any folder holding them)."""
    d, t, s = cfg.data, cfg.teacher, cfg.student
    paths = [d.train, d.validation, d.test, d.unlabeled, *t.extra_paths, s.path]
    paths += [t.path] if t.path not in ("builtin", "train") else [t.base] if t.path == "builtin" else []
    paths += [d.generator] if d.generated_texts and d.generator != "builtin" else []
    return [p for p in paths if p]


def check_sources(cfg: RunConfig) -> None:
    """Model folders the run reads exist: checked before an old run is touched."""
    from textdistill.models.loading import resolve_model_dir

    if cfg.teacher.path not in ("builtin", "train"):
        resolve_model_dir(cfg.teacher.path, "teacher.path")
    for i, extra in enumerate(cfg.teacher.extra_paths):
        resolve_model_dir(extra, f"teacher.extra_paths[{i}]")
    if cfg.student.init == "pretrained" and cfg.student.path:
        resolve_model_dir(cfg.student.path, "student.path")


def is_run_folder(folder: Path) -> bool:
    """A folder holding a run configuration: enough to continue it (`--resume`), never to replace it (that
    takes the marker written at creation, `textdistill.ownership`)."""
    try:
        saved = yaml.safe_load((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(saved, dict) and {"output_dir", "train", "student"} <= set(saved)


def _check_same_config(run_dir: Path, cfg: RunConfig) -> None:
    """A resumed run must be the run that was started: same settings except cosmetic ones."""
    saved = _flat(to_dict(load_config(run_dir / CONFIG)))
    now = _flat(to_dict(cfg))
    changed = [k for k in now
               if saved.get(k) != now[k] and k != "output_dir" and k.rsplit(".", 1)[-1] not in COSMETIC]
    if changed:
        k = changed[0]
        raise TextDistillError(
            f"cannot resume {str(run_dir)!r}: it was started with {k}={saved.get(k)!r}, now {k}={now[k]!r}; "
            f"leave out --config and setting flags to reuse the run's {CONFIG}, or start over with --overwrite"
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
        usual_permissions(tmp)
        if folder.exists():
            carry_ownership(folder, tmp)  # a folder of ours stays ours, and its lock stays held
            shutil.rmtree(folder)
        tmp.rename(folder)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failed(folder, e) from None
