"""Teacher scoring through ONNX Runtime: PyTorch's logits and hidden states, a cached export, a logged fallback."""

import threading

import pytest
import torch

import textdistill.models.onnx_teacher as onnx_teacher
import textdistill.tasks.classification as classification
from conftest import tiny_bert
from textdistill.cache import cache_root
from textdistill.data.labelled import Encoded
from textdistill.evaluation.predict import predict_logits
from textdistill.models.onnx_teacher import (exported_teacher, hidden_state_name, onnx_logits, onnx_outputs,
                                             onnx_teacher_session, probe_examples, relative_difference,
                                             scoring_backend)
from textdistill.hashing import folder_digest as teacher_folder_digest
from textdistill.tasks.classification import cached_teacher_logits, int8_scoring

VOCAB = 40
# float32 ONNX Runtime against PyTorch: other kernels, other summation order; measured about 2e-7
RTOL = 1e-5


def data(model, seed=1, segments=True) -> Encoded:
    """Random examples of many lengths, so every batch below carries padding."""
    examples = probe_examples(model, lengths=(30, 3, 17, 1, 9, 22, 5, 12, 30, 2, 7), seed=seed)
    if not segments:
        examples.token_type_ids = None
    return examples


@pytest.fixture(scope="module")
def teacher():
    return tiny_bert(VOCAB, layers=4, labels=("a", "b", "c"), seed=2).eval()


@pytest.fixture()
def session(teacher):
    return onnx_teacher_session(teacher, "digest")


def test_float32_scoring_on_a_cpu_goes_to_onnx_runtime_and_bf16_or_gpu_stays_in_pytorch():
    assert scoring_backend("no", "cpu") == "onnxruntime"
    assert scoring_backend("bf16", "cpu") == "pytorch"
    assert scoring_backend("no", "cuda") == "pytorch"


def test_onnx_logits_equal_pytorch_within_a_relative_tolerance(teacher, session):
    assert session is not None
    for segments in (True, False):  # a tokenizer that gives no segment ids: zeros, as PyTorch uses
        examples = data(teacher, segments=segments)
        for batch_size in (1, 4, 64):  # other batch sizes and lengths than the trace and the check
            expected = predict_logits(teacher, examples, batch_size)  # [N, C]
            logits = onnx_logits(session, examples, batch_size)
            assert logits.dtype == torch.float32 and logits.shape == expected.shape == (len(examples), 3)
            assert relative_difference(logits, expected) < RTOL
    empty = Encoded(input_ids=[], token_type_ids=None, labels=torch.zeros(0, dtype=torch.long))
    assert onnx_logits(session, empty, 4).shape == (0, 3)


def test_an_mpnet_teacher_without_segment_ids_scores_the_same():
    from transformers import MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=66, num_labels=2)
    teacher = MPNetForSequenceClassification(config).eval()  # the big teacher's architecture; padding id 1
    session = onnx_teacher_session(teacher, "mpnet")
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    examples = data(teacher, segments=False)
    assert relative_difference(onnx_logits(session, examples, 4), predict_logits(teacher, examples, 4)) < RTOL


def test_hidden_state_outputs_equal_output_hidden_states(teacher, session):
    examples = data(teacher)
    layers = (0, 2, 4)
    outputs = onnx_outputs(session, examples, batch_size=4, layers=layers)
    width = max(examples.lengths)
    for i, n in enumerate(examples.lengths):
        batch = examples.collate([i])  # alone: no padding in the reference
        with torch.no_grad():
            expected = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               token_type_ids=batch["token_type_ids"], output_hidden_states=True).hidden_states
        for layer in layers:
            got = outputs[hidden_state_name(layer)]  # [N, T, H]
            assert got.shape == (len(examples), width, 32)
            assert relative_difference(got[i, :n], expected[layer][0]) < RTOL
            assert not got[i, n:].any()  # past its own length an example has zeros, not padding's states


def test_the_export_is_reused_then_rebuilt_when_the_teachers_weights_change(tmp_path, monkeypatch):
    exports = []
    real = onnx_teacher.export_teacher
    monkeypatch.setattr(onnx_teacher, "export_teacher", lambda m, p: exports.append(p) or real(m, p))
    folder = tmp_path / "teacher"
    model = tiny_bert(VOCAB, seed=3).eval()
    model.save_pretrained(str(folder))
    first = onnx_teacher_session(model, teacher_folder_digest(folder))
    path, built = exported_teacher(model, teacher_folder_digest(folder))
    assert first is not None and not built and len(exports) == 1  # the second call reads the cached file
    with torch.no_grad():
        model.classifier.weight.mul_(-1)
    model.save_pretrained(str(folder))
    second = onnx_teacher_session(model, teacher_folder_digest(folder))
    assert len(exports) == 2 and second is not None
    assert len(list((cache_root() / "onnx").iterdir())) == 2
    examples = data(model)
    assert relative_difference(onnx_logits(second, examples), predict_logits(model, examples)) < RTOL


def test_two_runs_exporting_the_same_teacher_at_once_export_it_once(teacher, monkeypatch):
    exports = []
    real = onnx_teacher.export_teacher
    monkeypatch.setattr(onnx_teacher, "export_teacher", lambda m, p: exports.append(p) or real(m, p))
    results = []
    threads = [threading.Thread(target=lambda: results.append(exported_teacher(teacher, "shared"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(exports) == 1 and sorted(built for _, built in results) == [False, True]


def test_a_scorer_that_fails_the_check_is_not_used_and_pytorch_scores(teacher, monkeypatch, caplog):
    exports = []
    real = onnx_teacher.export_teacher
    monkeypatch.setattr(onnx_teacher, "export_teacher", lambda m, p: exports.append(p) or real(m, p))
    assert onnx_teacher_session(teacher, "digest") is not None
    assert len(exports) == 1
    monkeypatch.setattr(onnx_teacher, "relative_difference", lambda values, reference: 0.5)
    examples = data(teacher)
    logits = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="onnxruntime")
    assert "ONNX Runtime not used (its logits differ from PyTorch's by 5.0e-01" in caplog.text
    assert len(exports) == 2  # the cached export failed, so it was exported again before giving up
    assert torch.allclose(logits, predict_logits(teacher, examples, 4), rtol=0, atol=1e-6)
    # PyTorch's scores are cached under PyTorch's key: the same call with the PyTorch backend reads them
    caplog.clear()
    again = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="pytorch")
    assert "from the cache" in caplog.text and torch.equal(again, logits)


def test_an_export_that_raises_leaves_scoring_to_pytorch(teacher, monkeypatch, caplog):
    def broken(model, path):
        raise RuntimeError("an operator the exporter does not know")

    monkeypatch.setattr(onnx_teacher, "export_teacher", broken)
    assert onnx_teacher_session(teacher, "digest") is None
    assert "ONNX Runtime not used (RuntimeError: an operator the exporter does not know)" in caplog.text


def test_onnx_and_pytorch_scores_are_cached_apart(teacher, caplog):
    examples = data(teacher)
    fast = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="onnxruntime")
    slow = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="pytorch")
    assert "scoring with PyTorch" not in caplog.text
    assert relative_difference(fast, slow) < RTOL
    assert len(list((cache_root() / "scores").iterdir())) == 2  # one entry per backend
    caplog.clear()  # ONNX Runtime scores the same under any autocast: a bf16 run reads the float32 run's entry
    again = cached_teacher_logits(teacher, examples, 4, "digest", 32, "bf16", backend="onnxruntime")
    assert "from the cache" in caplog.text and torch.equal(again, fast)


def test_cached_float32_onnx_scores_are_read_without_opening_a_session(teacher, monkeypatch, caplog):
    examples = data(teacher)
    opened = []
    real = onnx_teacher_session
    monkeypatch.setattr(classification, "onnx_teacher_session", lambda *a, **k: opened.append(1) or real(*a, **k))
    first = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="onnxruntime")
    assert len(opened) == 1
    caplog.clear()
    again = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="onnxruntime")
    assert torch.equal(again, first) and "from the cache" in caplog.text and len(opened) == 1
    # other examples are not cached: the session is opened to score them
    cached_teacher_logits(teacher, data(teacher, seed=3), 4, "digest", 32, "no", backend="onnxruntime")
    assert len(opened) == 2 and "ONNX Runtime not used" not in caplog.text



def test_float32_scores_keyed_as_onnx_but_made_without_a_session_are_float32(teacher, monkeypatch):
    # a cache found sealed, then unusable by the time it is read, with no session to rebuild it: PyTorch
    # rebuilds it in float32 (the key's precision), not in the run's bf16 autocast
    examples = data(teacher)
    monkeypatch.setattr(classification, "is_signal_cached", lambda signal: True)
    monkeypatch.setattr(classification, "onnx_teacher_session", lambda *a, **k: None)
    logits = cached_teacher_logits(teacher, examples, 4, "digest", 32, "bf16", backend="onnxruntime")
    assert torch.equal(logits, predict_logits(teacher, examples, 4, precision="no"))

def test_int8_scoring_reads_the_quantised_copy_within_its_tolerance_and_is_cached_apart(teacher, caplog):
    examples = data(teacher)
    full = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="onnxruntime")
    int8 = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="int8")
    assert "ONNX Runtime, int8 weights (logits within" in caplog.text and "scoring with PyTorch" not in caplog.text
    # int8 weights moved the logits (by rounding, not by a wrong graph)
    assert 10 * RTOL < relative_difference(int8, full) < onnx_teacher.INT8_WEIGHTS_TOLERANCE
    assert len(list((cache_root() / "scores").iterdir())) == 2  # one entry each
    folder = next((cache_root() / "onnx").iterdir())
    assert (folder / "model.int8.onnx").is_file() and (folder / "int8.json").is_file()
    caplog.clear()  # a second call reads the scores back, and the quantised copy is not made again
    again = cached_teacher_logits(teacher, examples, 4, "digest", 32, "no", backend="int8")
    assert torch.equal(again, int8) and "quantising" not in caplog.text and "from the cache" in caplog.text



def test_the_int8_probe_refuses_a_wrong_graph_and_leaves_rounding_to_the_validation_check(teacher, monkeypatch,
                                                                                          caplog):
    # a wrong graph: the int8 copy of another teacher of the same shape
    other = tiny_bert(VOCAB, layers=4, labels=("a", "b", "c"), seed=7).eval()
    wrong = onnx_teacher.quantised_teacher(exported_teacher(other, "other")[0])
    real = onnx_teacher.quantised_teacher
    monkeypatch.setattr(onnx_teacher, "quantised_teacher", lambda path, rebuild=False: wrong)
    assert onnx_teacher_session(teacher, "digest", int8=True) is None
    assert "ONNX Runtime not used (its logits differ from PyTorch's by" in caplog.text
    # rounding that moves random-token probes by a quarter of their scale (as a 12-layer teacher's did) passes
    monkeypatch.setattr(onnx_teacher, "quantised_teacher", real)
    monkeypatch.setattr(onnx_teacher, "relative_difference", lambda values, reference: 0.25)
    assert onnx_teacher_session(teacher, "digest", int8=True) is not None

def _validation(n: int) -> Encoded:
    labels = torch.arange(n) % 3
    return Encoded(input_ids=[[1, 2]] * n, token_type_ids=None, labels=labels, lengths=[2] * n)


def _scored_with(wrong: int):
    """Logits of a full-precision teacher right on every example and an int8 one wrong on the first `wrong`."""
    def scored(part, name, backend):
        predicted = part.labels.clone()
        if backend == "int8":
            predicted[:wrong] = (predicted[:wrong] + 1) % 3
        return torch.nn.functional.one_hot(predicted, 3).float()
    return scored


def test_an_int8_teacher_is_used_only_within_a_point_of_full_precision_on_validation(teacher, caplog):
    validation = _validation(200)
    backend, measured = int8_scoring(teacher, "digest", validation, _scored_with(2), "teacher")
    assert backend == "int8" and measured["used"]
    assert measured["validation_agreement"] == pytest.approx(0.99, rel=1e-6)
    assert measured["validation_accuracy"] == pytest.approx(0.99, rel=1e-6)
    assert measured["full_precision_validation_accuracy"] == 1.0
    caplog.clear()
    backend, measured = int8_scoring(teacher, "digest", validation, _scored_with(3), "teacher")  # 1.5 points lost
    assert backend == "auto" and not measured["used"]
    assert "more than 1 point lost, so scoring in full precision" in caplog.text


def test_int8_scoring_without_a_session_stays_in_full_precision(teacher, monkeypatch, caplog):
    monkeypatch.setattr(onnx_teacher, "export_teacher", lambda m, p: (_ for _ in ()).throw(RuntimeError("no")))
    backend, measured = int8_scoring(teacher, "digest", _validation(10), _scored_with(0), "teacher")
    assert backend == "auto" and measured == {"used": False, "reason": "no ONNX Runtime session matched the teacher"}
