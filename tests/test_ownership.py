"""textdistill replaces only folders it created, never while another process works in them, and puts the old
folder back when the new work fails before it has started. Every refusal is checked for its message and
for leaving everything outside the command's folder as it was."""

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from conftest import write_config
from folder_state import snapshot, start_holder
from textdistill.cli import main
from textdistill.config import load_config
from textdistill.errors import TextDistillError
from textdistill.ownership import LOCK, MARKER, OwnedFolder, protected_reason, protecting, read_marker
from textdistill.pipeline import commands
from textdistill.pipeline.run import run_distill

QUICK = {"train.max_steps": 2, "report.baseline": False, "report.latency_examples": 2, "report.throughput_batches": 1}


def _fail(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _old_run(folder: Path, command: str = "distill") -> None:
    """A finished-looking run of ours (marker, config, weights stand-in)."""
    with OwnedFolder.open(folder, "run", command=command):
        (folder / "config.yaml").write_text("output_dir: x\n")
        (folder / "student").mkdir()
        (folder / "student" / "model.safetensors").write_bytes(os.urandom(64))


@pytest.fixture()
def runs(tmp_path) -> Path:
    """The parent of the run folders; the cache of conftest lives outside it."""
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


# --- the mechanism ------------------------------------------------------------------------------------------

def test_marker_and_lock_are_written_at_creation_and_a_second_opener_is_refused(runs):
    folder = OwnedFolder.open(runs / "a", "run", command="distill")
    marker = read_marker(runs / "a")
    assert marker["kind"] == "run" and len(marker["id"]) == 32 and marker["version"] and marker["created"] > 0
    with pytest.raises(TextDistillError, match=f"in use by process {os.getpid()}"):
        OwnedFolder.open(runs / "a", "run", overwrite=True)
    with pytest.raises(TextDistillError, match=f"in use by process {os.getpid()}"):
        OwnedFolder.open(runs / "a", "run", resume=True)
    folder.close()
    OwnedFolder.open(runs / "a", "run", resume=True).close()  # released: free again
    assert sorted(p.name for p in runs.iterdir()) == ["a"]


def test_home_root_current_folder_and_ancestors_of_inputs_are_never_replaced(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "project" / "data").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "project")
    assert "root of the file system" in protected_reason("/")
    assert "home folder" in protected_reason("~")
    assert "current folder" in protected_reason(".") and "current folder" in protected_reason(tmp_path)
    assert "an input" in protected_reason(tmp_path / "elsewhere", [tmp_path / "elsewhere" / "train.csv"])
    monkeypatch.chdir(tmp_path)
    with protecting(home / "project" / "data" / "config.yaml"):
        assert protected_reason(tmp_path / "other") is None
        assert "an input" in protected_reason(home / "project" / "data")
    assert protected_reason(home / "project" / "data") is None
    # a link is judged by where it leads
    (tmp_path / "link").symlink_to(home)
    assert "home folder" in protected_reason(tmp_path / "link")


def test_replaced_folder_is_put_back_when_the_new_work_fails_before_it_started(runs):
    _old_run(runs / "a")
    before = snapshot(runs)
    with pytest.raises(RuntimeError):
        with OwnedFolder.open(runs / "a", "run", overwrite=True):
            assert not (runs / "a" / "student").exists()  # the new folder is in place, the old one aside
            raise RuntimeError("the new run failed while starting")
    assert snapshot(runs) == before

    with OwnedFolder.open(runs / "a", "run", overwrite=True) as folder:
        folder.started()
        (runs / "a" / "new.txt").write_text("new")
    assert sorted(p.name for p in runs.iterdir()) == ["a"]  # the old copy is gone, nothing else is left
    assert sorted(p.name for p in (runs / "a").iterdir()) == [MARKER, LOCK, "new.txt"]


def test_a_run_killed_before_it_started_leaves_the_old_one_for_its_successor_to_remove(runs):
    _old_run(runs / "a")
    killed = OwnedFolder.open(runs / "a", "run", overwrite=True)
    aside = [p.name for p in runs.iterdir() if p.name != "a"]
    assert len(aside) == 1 and aside[0].startswith(".a.replaced-")
    killed.lock.release()  # what the kernel does when the process dies
    killed._old_lock.release()
    with OwnedFolder.open(runs / "a", "run", resume=True) as resumed:  # `--resume` continues the new run
        resumed.started()
    assert sorted(p.name for p in runs.iterdir()) == ["a"]


def test_a_lock_held_by_another_process_refuses_with_its_pid_and_dies_with_it(runs):
    process = start_holder(runs / "a")
    try:
        before = snapshot(runs)
        for mode in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(TextDistillError, match=f"in use by process {process.pid}"):
                OwnedFolder.open(runs / "a", "run", **mode)
        assert snapshot(runs) == before
        os.kill(process.pid, signal.SIGKILL)
        process.join(30)
        OwnedFolder.open(runs / "a", "run", resume=True).close()
    finally:
        process.kill()
        process.join(30)


# --- issue items 1-4 and 7 through the commands -------------------------------------------------------------

def test_overwrite_refuses_a_project_folder_the_cwd_and_a_legacy_run(tmp_path, runs, tiny_overrides, monkeypatch,
                                                                    capsys):
    # 1. a project with its own config.yaml, output_dir ".", .git and data: the run keys alone made it a "run"
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "data.csv").write_text("text,label\ngood,pos\n")
    config = write_config(project / "config.yaml", {**tiny_overrides, **QUICK, "output_dir": "."})
    other = write_config(tmp_path / "other.yaml", {**tiny_overrides, **QUICK, "output_dir": str(project)})
    # a run written before markers existed: config.yaml and results, no marker
    legacy = runs / "legacy"
    (legacy / "student").mkdir(parents=True)
    (legacy / "config.yaml").write_text(yaml.safe_dump({"output_dir": str(legacy), "train": {}, "student": {}}))
    (legacy / "student" / "model.safetensors").write_bytes(b"weights")
    before = snapshot(tmp_path, skip=tmp_path / "textdistill-cache")

    monkeypatch.chdir(project)
    msg = _fail(["distill", "--config", "config.yaml", "--overwrite"], capsys)
    assert "refusing to use '.'" in msg and "current folder" in msg
    monkeypatch.chdir(tmp_path)
    msg = _fail(["distill", "--config", str(config), "--overwrite", "--output_dir", str(project)], capsys)
    assert f"refusing to use {str(project)!r}" in msg and "config.yaml" in msg  # it holds the config in use
    msg = _fail(["distill", "--config", str(other), "--overwrite"], capsys)
    assert f"refusing to replace {str(project)!r}" in msg and "not a textdistill run folder" in msg
    assert f"no {MARKER} marker" in msg
    msg = _fail(["distill", "--config", str(other), "--overwrite", "--output_dir", str(legacy)], capsys)
    assert str(legacy) in msg and "before markers existed" in msg and "move or delete it yourself" in msg
    assert snapshot(tmp_path, skip=tmp_path / "textdistill-cache") == before


def test_overwrite_refuses_home_even_with_a_marker(tmp_path, tiny_overrides, monkeypatch, capsys):
    home = tmp_path / "home"
    _old_run(home)  # even a folder textdistill made is not replaced when it is home
    monkeypatch.setenv("HOME", str(home))
    config = write_config(tmp_path / "c.yaml", {**tiny_overrides, **QUICK, "output_dir": "~"})
    before = snapshot(tmp_path, skip=tmp_path / "textdistill-cache")
    msg = _fail(["distill", "--config", str(config), "--overwrite"], capsys)
    assert f"refusing to use {str(home)!r}" in msg and "home folder" in msg
    assert snapshot(tmp_path, skip=tmp_path / "textdistill-cache") == before


def test_overwrite_validates_first_and_puts_the_old_run_back_when_the_new_one_fails(runs, tiny_overrides, monkeypatch):
    _old_run(runs / "run")
    before = snapshot(runs)
    base = {**tiny_overrides, **QUICK, "output_dir": str(runs / "run")}
    # 4. a typo in a column name, a missing teacher: refused before the old run is touched at all
    opened = []
    real_open = OwnedFolder.open
    monkeypatch.setattr(OwnedFolder, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    for extra, needle in (({"data.text_column": "txt"}, "did you mean 'text'"),
                          ({"teacher.path": str(runs / "no_teacher")}, "does not exist")):
        with pytest.raises(TextDistillError, match=needle):
            run_distill(load_config(None, {**base, **extra}), overwrite=True)
        assert snapshot(runs) == before and opened == []
    # a problem found only once the new run has begun (the student's layers): the old run comes back
    with pytest.raises(TextDistillError, match="out of range"):
        run_distill(load_config(None, {**base, "student.layers": [0, 7]}), overwrite=True)
    assert snapshot(runs) == before
    # a good config replaces it, and leaves nothing beside it
    old_id = read_marker(runs / "run")["id"]
    run_distill(load_config(None, base), overwrite=True)
    assert sorted(p.name for p in runs.iterdir()) == ["run"]
    assert read_marker(runs / "run")["id"] != old_id and (runs / "run" / "summary.json").is_file()
    assert not (runs / "run" / "student" / "model.safetensors").read_bytes() == before["run/student/model.safetensors"]


def test_a_second_run_in_a_folder_in_use_is_refused_with_the_holders_pid(runs, tiny_overrides):
    # 7. the first run holds the folder (another process); the second, with --overwrite or --resume, is refused
    process = start_holder(runs / "run")
    try:
        (runs / "run" / "config.yaml").write_text(yaml.safe_dump({"output_dir": str(runs / "run"), "train": {},
                                                                  "student": {}}))
        before = snapshot(runs)
        cfg = load_config(None, {**tiny_overrides, **QUICK, "output_dir": str(runs / "run")})
        with pytest.raises(TextDistillError, match=f"in use by process {process.pid}"):
            run_distill(cfg, overwrite=True)
        assert snapshot(runs) == before
    finally:
        process.kill()
        process.join(30)


def test_export_replaces_only_its_own_exports_never_the_source_or_home(tmp_path, teacher_dir, monkeypatch, capsys):
    # 2. the tiny teacher folder stands in for a student: export takes any classifier folder
    source = tmp_path / "run"
    (source / "student").mkdir(parents=True)
    for f in teacher_dir.iterdir():
        (source / "student" / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "exports" / "model"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / MARKER).write_text(json.dumps({"kind": "export", "id": "x" * 32}))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = snapshot(tmp_path, skip=tmp_path / "textdistill-cache")
    cases = [([str(out)], "already exists"),
             ([str(out), "--overwrite"], "not a textdistill export folder"),
             (["~", "--overwrite"], "home folder"),
             ([str(source), "--overwrite"], "an input of this command"),
             ([str(source / "student"), "--overwrite"], "inside the model folder it exports"),
             ([str(source / "student" / "sub"), "--overwrite"], "inside the model folder it exports")]
    for args, needle in cases:
        msg = _fail(["export", str(source), "--output", *args], capsys)
        assert needle in msg, msg
        assert snapshot(tmp_path, skip=tmp_path / "textdistill-cache") == before

    fresh = tmp_path / "exports" / "fresh"
    commands.export(source, fresh)
    first = read_marker(fresh)
    assert first["kind"] == "export"
    with pytest.raises(TextDistillError, match="already exists"):
        commands.export(source, fresh)
    commands.export(source, fresh, overwrite=True)
    assert read_marker(fresh)["id"] != first["id"]
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["fresh", "model"]


def test_teacher_output_is_replaced_only_with_overwrite_and_only_if_ours(tmp_path, tiny_overrides, teacher_dir,
                                                                       capsys):
    # 3. `teacher --output DIR` used to replace any folder without a flag
    out = tmp_path / "teachers" / "mine"
    out.mkdir(parents=True)
    (out / "precious.txt").write_text("keep me")
    args = ["-q", "teacher", "--data.train", tiny_overrides["data.train"], "--teacher.base", str(teacher_dir),
            "--teacher.finetune.max_steps", "2", "--teacher.finetune.progress", "false", "--output", str(out)]
    before = snapshot(tmp_path, skip=tmp_path / "textdistill-cache")
    assert "already exists" in _fail(args, capsys)
    assert "not a textdistill teacher folder" in _fail([*args, "--overwrite"], capsys)
    assert snapshot(tmp_path, skip=tmp_path / "textdistill-cache") == before

    fresh = tmp_path / "teachers" / "fresh"
    assert main_ok([*args[:-1], str(fresh)])
    assert read_marker(fresh)["kind"] == "teacher" and (fresh / "model.safetensors").is_file()
    assert "already exists" in _fail([*args[:-1], str(fresh)], capsys)
    assert main_ok([*args[:-1], str(fresh), "--overwrite"])
    assert sorted(p.name for p in (tmp_path / "teachers").iterdir()) == ["fresh", "mine"]  # no .work left


def main_ok(argv) -> bool:
    from textdistill.cli import run

    return run(argv) == 0


def test_demo_replaces_only_an_earlier_demo_run(runs, tiny_overrides, monkeypatch):
    # 3. `demo --output_dir` used to wipe any run
    _old_run(runs / "mine", command="distill")
    before = snapshot(runs)
    cfg = load_config(None, {**tiny_overrides, **QUICK, "output_dir": str(runs / "mine")})
    with pytest.raises(TextDistillError, match="made by `textdistill distill`, and demo replaces only its own"):
        commands.run_demo(cfg)
    assert snapshot(runs) == before

    _old_run(runs / "demo", command="demo")
    commands.run_demo(load_config(None, {**tiny_overrides, **QUICK, "output_dir": str(runs / "demo")}))
    assert read_marker(runs / "demo")["command"] == "demo" and (runs / "demo" / "summary.json").is_file()
    assert sorted(p.name for p in runs.iterdir()) == ["demo", "mine"]
