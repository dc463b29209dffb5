"""Precision and dropout: 'auto' picks bf16 only where native (and says when it is slow), bf16 scoring stays
close to float32."""

import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE, synthetic_frame, tiny_bert, write_tokenizer
from textdistill.config import TrainConfig, load_config
from textdistill.data.labelled import TextSplit, encode
from textdistill.errors import TextDistillError
from textdistill.evaluation.predict import predict_logits
from textdistill.tasks.classification import cached_teacher_logits
from textdistill.pipeline.teacher import cache_root
from textdistill.training.loop import make_accelerator, train
from textdistill.training.objectives import label_objective
from textdistill.precision import native_bf16, resolve_precision, set_dropout


def _encoded(tmp_path, n=24):
    tok = write_tokenizer(tmp_path / "tok", POSITIVE + NEGATIVE + FILLER)
    frame = synthetic_frame(n, seed=4)
    labels = [0 if label == "neg" else 1 for label in frame["label"]]
    return tok, encode(tok, TextSplit(texts=list(frame["text"]), labels=list(frame["label"])), labels, 16, "test")


def assert_close_to_scale(got: torch.Tensor, want: torch.Tensor, share: float) -> None:
    """`got` within `share` of `want`'s largest magnitude, everywhere."""
    scale = float(want.abs().max())
    assert scale > 0
    diff = float((got - want).abs().max())
    assert diff <= share * scale, f"max difference {diff:.3g} is over {share} of the scale {scale:.3g}"


def test_auto_is_bf16_exactly_where_the_hardware_is_native():
    assert resolve_precision("auto", "cpu") == ("bf16" if native_bf16("cpu") else "no")
    for explicit in ("no", "bf16", "fp16"):
        assert resolve_precision(explicit, "cpu") == explicit
    # bf16 autocast is the loop's own, so float32 and bf16 runs can follow each other in one process
    assert make_accelerator(TrainConfig(mixed_precision="no")).mixed_precision == "no"
    assert make_accelerator(TrainConfig(mixed_precision="bf16")).mixed_precision == "no"


@pytest.mark.parametrize("bf16_seconds,hint", [(0.5, False), (0.99, False), (1.01, True), (2.0, True)])
def test_auto_follows_the_flag_and_says_so_where_bf16_is_timed_slower(monkeypatch, caplog, bf16_seconds, hint):
    import textdistill.precision as precision

    timed = []
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(precision, "_matmul_seconds",
                        lambda dtype: timed.append(dtype) or (1.0 if dtype == torch.float32 else bf16_seconds))
    precision.bf16_speed_on_cpu.cache_clear()
    try:
        with caplog.at_level("INFO", logger="textdistill"):
            assert resolve_precision("auto", "cpu") == "bf16"
            assert resolve_precision("auto", "cpu") == "bf16"
        assert timed == [torch.float32, torch.bfloat16]  # timed once per process
        said = f"runs at {1 / bf16_seconds:.2f}x float32's speed here; train.mixed_precision: no" in caplog.text
        assert said == hint
    finally:
        precision.bf16_speed_on_cpu.cache_clear()


def test_a_cpu_without_the_flags_gets_float32_without_timing(monkeypatch):
    import textdistill.precision as precision

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False)
    monkeypatch.setattr(precision, "_matmul_seconds", lambda dtype: pytest.fail("timed without the flags"))
    assert resolve_precision("auto", "cpu") == "no"


def test_one_process_trains_in_float32_then_bf16(tmp_path):
    tok, enc = _encoded(tmp_path)
    before = tiny_bert(len(tok.get_vocab())).state_dict()
    trained = {}
    for precision in ("no", "bf16", "auto"):
        model = tiny_bert(len(tok.get_vocab()))
        result = train(model, enc, label_objective(),
                       TrainConfig(max_steps=1, progress=False, mixed_precision=precision, freeze_embeddings=False),
                       name=precision, run_dir=tmp_path)
        weights = model.state_dict()
        assert result.steps == 1
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())  # master weights
        assert not torch.equal(weights["classifier.weight"], before["classifier.weight"])  # the step was taken
        trained[precision] = weights["classifier.weight"]
    # one step of the same update: bf16 autocast changes only the rounding of the forward and backward
    assert not torch.equal(trained["no"], trained["bf16"])
    assert_close_to_scale(trained["bf16"] - before["classifier.weight"], trained["no"] - before["classifier.weight"],
                          0.25)


def test_set_dropout_reaches_every_dropout_layer_and_none_leaves_them():
    model = tiny_bert(30)
    set_dropout(model, None)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    set_dropout(model, 0.0)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}


def test_training_applies_the_configured_dropout(tmp_path):
    tok, enc = _encoded(tmp_path)
    model = tiny_bert(len(tok.get_vocab()))
    train(model, enc, label_objective(), TrainConfig(max_steps=1, progress=False, dropout=0.25), name="d",
          run_dir=tmp_path)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.25}


def test_dropout_out_of_range_is_a_config_error():
    with pytest.raises(TextDistillError, match="train.dropout must be in"):
        load_config(None, {"data.dataset": "rotten_tomatoes", "train.dropout": 1.5})


def test_bf16_scoring_is_close_to_float32_and_cached_under_its_own_key(tmp_path):
    tok, enc = _encoded(tmp_path)
    teacher = tiny_bert(len(tok.get_vocab()), seed=3).eval()
    full = predict_logits(teacher, enc)
    half = predict_logits(teacher, enc, precision="bf16")
    assert half.dtype == torch.float32
    assert not torch.equal(full, half)  # bf16 really ran
    # tolerances are shares of the logits' own scale (about 0.006 for this random model): an all-zero output fails
    assert_close_to_scale(half, full, 0.1)  # measured: 2% of the scale
    a = cached_teacher_logits(teacher, enc, 8, "digest", 16, "no")
    b = cached_teacher_logits(teacher, enc, 8, "digest", 16, "bf16")
    # other batches than above (other padding): equal up to float rounding
    assert_close_to_scale(a, full, 1e-4)
    assert not torch.equal(a, b)
    assert_close_to_scale(b, half, 0.1)
    assert len(list((cache_root() / "scores").iterdir())) == 2  # one entry per precision
