"""Atomic writes: a reader sees the old file or the new one, and the new one is readable like any new file."""

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from conftest import tiny_bert, write_tokenizer
from textdistill.atomic import atomic_write, write_json
from textdistill.errors import TextDistillError
from textdistill.pipeline.runs import save_model


@pytest.fixture()
def umask():
    def set_umask(value):
        os.umask(value)
    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_written_file_has_the_permissions_of_any_new_file(tmp_path, umask, mask):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    atomic_write(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"\x00" * 3))
    # safetensors makes a file of its own, 0600, in place of the temporary one
    atomic_write(tmp_path / "c.safetensors", lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)))
    for name in ("a.json", "b.bin", "c.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_a_saved_model_folder_has_the_permissions_of_any_new_file(tmp_path, umask, mask):
    umask(mask)
    tok = write_tokenizer(tmp_path / "tok", ["good", "bad"])
    save_model(tiny_bert(len(tok.get_vocab()), layers=1), tok, tmp_path / "student")
    files = sorted((tmp_path / "student").iterdir())
    assert "model.safetensors" in [f.name for f in files]
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o666 & ~mask for f in files}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(TextDistillError, match="could not write .*No space left on device"):
        atomic_write(tmp_path / "a.json", fail)
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
