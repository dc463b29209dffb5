"""Nothing textdistill reads can run code, and no setting makes it write outside the run folder."""

import os
import pickle
from pathlib import Path

import pytest
import torch

from textdistill.errors import TextDistillError
from textdistill.ownership import OwnedFolder
from textdistill.pipeline.runs import inside_run, is_run_folder
from textdistill.training.checkpoints import check_name, checkpoint_name


def test_paths_cannot_leave_the_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert inside_run(run, "phases/student.json", "phase") == (run / "phases" / "student.json").resolve()
    (run / "link").symlink_to(tmp_path)
    for bad in ("../outside.json", "/etc/passwd", "link/outside.json", "phases/../../x", "."):
        with pytest.raises(TextDistillError, match="leads outside the run folder"):
            inside_run(run, bad, "phase")


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "-x", "x.y", "student\n"])
def test_training_names_are_plain_words(name):
    with pytest.raises(TextDistillError, match="letters, digits"):
        checkpoint_name(name, 3)
    assert check_name("baseline_2") == "baseline_2"


def test_a_run_config_makes_a_folder_resumable_never_replaceable(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("name: my project\nversion: 2\n")  # somebody else's config.yaml
    assert not is_run_folder(project)
    (project / "config.yaml").write_text("output_dir: runs/x\nstudent: {}\ntrain: {}\n")
    assert is_run_folder(project)  # enough for --resume, which deletes nothing
    with pytest.raises(TextDistillError, match="not a textdistill run folder"):
        OwnedFolder.open(project, "run", overwrite=True)  # replacing takes the marker written at creation
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]
    assert sorted(p.name for p in project.iterdir()) == ["config.yaml"]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    """optimizer.pt is the one torch-pickled file; it is loaded with weights_only=True."""
    from safetensors.torch import save_file

    from textdistill.config import TrainConfig
    from textdistill.training.checkpoints import restore_checkpoint

    folder = tmp_path / "student-step00000001"
    folder.mkdir()
    (folder / "state.json").write_text('{"format": 1, "train_config": {}, "identity": {}}')
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    with open(folder / "optimizer.pt", "wb") as f:
        pickle.dump({"optimizer": _RunsCode()}, f, protocol=2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TextDistillError, match="could run code"):
        # every file is read before any object is touched, so none is needed here
        restore_checkpoint(folder, accelerator=None, model=None, extra=None, optimizer=None, scheduler=None,
                           best_path=tmp_path / "best", cfg=TrainConfig(), identity={})
    assert not (tmp_path / "PWNED").exists()


def test_a_model_folder_whose_weights_would_run_code_is_refused(tmp_path, monkeypatch, teacher_dir):
    """textdistill's own loader, not only torch.load: a pickled pytorch_model.bin is refused, in one line."""
    from textdistill.models.loading import load_generation_model
    from textdistill.models.loading import load_classifier

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text((teacher_dir / "config.json").read_text())
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"bert.pooler.dense.weight": _RunsCode()}, f, protocol=2)
    monkeypatch.chdir(tmp_path)
    for load in (lambda: load_classifier(folder, "teacher.path"),
                 lambda: load_generation_model(folder, "causal_lm", "teacher.path")):
        with pytest.raises(TextDistillError, match="could run code, and are refused") as e:
            load()
        assert "\n" not in str(e.value)
    assert not (tmp_path / "PWNED").exists()
