"""Student construction from the teacher: vocabulary pruning, teacher-derived width reduction, the size table."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast

from conftest import FILLER, NEGATIVE, POSITIVE, synthetic_frame, tiny_bert, write_tokenizer
from textdistill.config import LossConfig, StudentConfig, load_config
from textdistill.data.labelled import Encoded
from textdistill.errors import TextDistillError
from textdistill.models.size import count_parameters
from textdistill.models.students import build_student, construct_student
from textdistill.models.vocab import (check_prunable, check_pruned_vocabulary, common_token_ids, id_map, pruned_tokenizer,
                                      remap_encoded, task_token_ids)
from textdistill.models.width import calibration_batches
from textdistill.training.intermediate import build_projections, check_models, resolve_layer_map
from textdistill.training.example_objectives import classification_objective

WORDS = ["the", "film", "fun", "play", "player", "##ing", "##er", "##ed", "cat", "a", "good", "bad"]
CORPUS = ["the playing film", "a funer film", "The FILM, a fun play!"]
PAIRS = ["good", "bad film", "the cat"]


@pytest.fixture()
def tok(tmp_path):
    return write_tokenizer(tmp_path / "tok", WORDS)


def _encoded(tokenizer, texts: list[str]) -> Encoded:
    ids = tokenizer(texts)["input_ids"]
    return Encoded(input_ids=ids, token_type_ids=None, labels=torch.zeros(len(ids), dtype=torch.long),
                   lengths=[len(x) for x in ids], pad_id=tokenizer.pad_token_id)


# ---- vocabulary pruning ---------------------------------------------------------------------------


def test_pruned_tokenizer_is_exactly_the_remapped_teacher_ids_on_the_pruning_text(tok, tmp_path):
    kept = sorted(set(task_token_ids(tok, CORPUS)) | set(task_token_ids(tok, CORPUS, PAIRS)))
    assert set(tok.all_special_ids) <= set(kept)
    assert len(kept) < len(tok)
    small = pruned_tokenizer(tok, kept)
    table = id_map(kept, len(tok), small.unk_token_id).tolist()
    for texts, pairs in ((CORPUS, None), (CORPUS, PAIRS)):
        teacher = tok(texts, pairs) if pairs else tok(texts)
        student = small(texts, pairs) if pairs else small(texts)
        assert student["input_ids"] == [[table[i] for i in ids] for ids in teacher["input_ids"]]
        assert student.get("token_type_ids") == teacher.get("token_type_ids")
    check_pruned_vocabulary(tok, small, kept, len(kept))
    # saved and reloaded like any Hugging Face tokenizer, same class, same ids
    small.save_pretrained(str(tmp_path / "small"))
    again = AutoTokenizer.from_pretrained(str(tmp_path / "small"))
    assert type(again) is type(tok)
    assert again(CORPUS)["input_ids"] == small(CORPUS)["input_ids"]


def test_unseen_words_degrade_to_sub_pieces_or_unk(tok):
    kept = task_token_ids(tok, CORPUS)
    small = pruned_tokenizer(tok, kept)
    assert tok.tokenize("player") == ["player"]
    assert small.tokenize("player") == ["play", "##er"]  # 'player' was never seen: its kept pieces
    assert tok.tokenize("played") == ["play", "##ed"]
    assert small.tokenize("played") == ["[UNK]"]  # '##ed' never seen: WordPiece gives the whole word [UNK]
    assert small.tokenize("cat good") == ["[UNK]", "[UNK]"]
    ids = small("cat played player")["input_ids"]
    assert max(ids) < len(kept)
    assert small.convert_ids_to_tokens(ids[0]) == "[CLS]" and small.convert_ids_to_tokens(ids[-1]) == "[SEP]"


def test_common_tokens_are_the_first_multi_character_pieces_and_keep_unseen_words_whole(tmp_path):
    # a vocabulary laid out like BERT's: placeholders, single characters, then pieces by frequency
    words = ["[unused0]", "[unused1]", "a", "c", "##s", "the", "##ed", "player", "play", "cat", "good", "##er", "fun"]
    tok = write_tokenizer(tmp_path / "tok", words)
    common = common_token_ids(tok, 4)
    assert tok.convert_ids_to_tokens(common) == ["the", "##ed", "player", "play"]
    assert common_token_ids(tok, 0) == []
    assert len(common_token_ids(tok, 10_000)) == 8  # every multi-character piece, nothing special
    task = task_token_ids(tok, ["fun cat"])
    assert pruned_tokenizer(tok, task).tokenize("player played") == ["[UNK]", "[UNK]"]
    wider = pruned_tokenizer(tok, sorted(set(task) | set(common)))
    assert wider.tokenize("player played fun") == ["player", "play", "##ed", "fun"]


def test_remap_encoded_keeps_teacher_ids_for_the_teacher(tok):
    kept = task_token_ids(tok, CORPUS)
    small = pruned_tokenizer(tok, kept)
    part = _encoded(tok, CORPUS)
    remapped = remap_encoded(part, id_map(kept, len(tok), small.unk_token_id), small.pad_token_id)
    assert remapped.input_ids == small(CORPUS)["input_ids"]
    batch = remapped.collate([0, 1, 2])
    assert torch.equal(batch["teacher_input_ids"], part.collate([0, 1, 2])["input_ids"])
    assert batch["teacher_input_ids"].shape == batch["input_ids"].shape


def test_non_wordpiece_tokenizer_is_a_clear_error():
    vocab = {"[UNK]": 0, "a": 1, "b": 2, "ab": 3}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")], unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    with pytest.raises(TextDistillError, match="WordPiece.*student.vocab to 'teacher'"):
        check_prunable(bpe)
    with pytest.raises(TextDistillError, match="student.vocab to 'teacher'"):
        task_token_ids(bpe, ["ab a"])


def test_pruned_student_slices_embedding_rows_and_reads_like_the_teacher(tok):
    teacher = tiny_bert(len(tok), layers=2).eval()
    kept = task_token_ids(tok, CORPUS)
    student, steps = construct_student(StudentConfig(layers=[0, 1], ffn_keep=1.0), teacher, ["neg", "pos"], 0,
                                       kept_ids=kept)
    emb = student.get_input_embeddings().weight
    assert emb.shape[0] == len(kept)
    assert torch.equal(emb, teacher.get_input_embeddings().weight[kept])
    assert student.config.pad_token_id == kept.index(teacher.config.pad_token_id)
    # the whole-teacher student on its own ids gives the teacher's logits on the teacher's ids
    small = pruned_tokenizer(tok, kept)
    with torch.no_grad():
        t = teacher(**tok(CORPUS, padding=True, return_tensors="pt")).logits
        s = student.eval()(**small(CORPUS, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(s, t)
    assert [r["step"] for r in steps] == ["teacher", "layers kept", "FFN narrowed", "vocabulary pruned", "width reduced"]
    assert steps[3]["parameters"] == steps[2]["parameters"] - (len(tok) - len(kept)) * 32
    assert steps[-1]["parameters"] == count_parameters(student)


def test_pruned_vocabulary_checks_and_shrink_student(tok):
    kept = task_token_ids(tok, CORPUS)
    small = pruned_tokenizer(tok, kept)
    with pytest.raises(TextDistillError, match="does not match the kept teacher tokens"):
        check_pruned_vocabulary(tok, tok, kept, len(tok))  # the teacher's own tokenizer is not the pruned one
    with pytest.raises(TextDistillError, match="embedding has 3 rows"):
        check_pruned_vocabulary(tok, small, kept, 3)
    teacher = tiny_bert(len(tok), layers=2)
    shrunk, steps = construct_student(StudentConfig(init="shrink", num_layers=1, hidden_size=16, num_heads=2), teacher,
                                      ["neg", "pos"], 0, kept_ids=kept)
    assert shrunk.get_input_embeddings().num_embeddings == len(kept)
    assert [r["step"] for r in steps] == ["teacher", "smaller config, random init"]


def test_live_teacher_reads_its_own_ids_with_a_pruned_student(tok):
    """Hidden-state matching of a student that is the whole teacher with pruned rows is exactly 0: the
    teacher saw its own ids (were it fed the student's ids, the states would differ)."""
    teacher = tiny_bert(len(tok), layers=2).eval()
    kept = task_token_ids(tok, CORPUS)
    student = build_student(StudentConfig(layers=[0, 1], ffn_keep=1.0), teacher, ["neg", "pos"], 0, kept_ids=kept)
    small = pruned_tokenizer(tok, kept)
    part = remap_encoded(_encoded(tok, CORPUS), id_map(kept, len(tok), small.unk_token_id), small.pad_token_id)
    part.teacher_logits = torch.zeros(len(CORPUS), 2)
    cfg = LossConfig(alpha=1.0, beta=0.0, hidden_loss="mse", embedding_weight=1.0)
    matches = resolve_layer_map(cfg, 2, 2)
    objective = classification_objective(cfg, teacher, matches, build_projections(cfg, matches, student, teacher))
    terms = objective(student.eval(), part.collate([0, 1, 2]))
    assert terms["hidden"].item() < 1e-10 and terms["embedding"].item() < 1e-10


# ---- width reduction -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_teacher():
    """A tiny teacher trained for a few steps on the synthetic task, so its logits carry a signal."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    tokenizer = write_tokenizer(folder, POSITIVE + NEGATIVE + FILLER)
    teacher = tiny_bert(len(tokenizer), layers=2, seed=3)
    frame = synthetic_frame(96, seed=5)
    enc = tokenizer(frame["text"].tolist(), padding=True, return_tensors="pt")
    labels = torch.tensor([int(x == "pos") for x in frame["label"]])
    opt = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    teacher.train()
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(teacher(**enc).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    teacher.eval()
    return teacher, tokenizer, enc


def _calibration(tokenizer, enc) -> list[dict]:
    ids = enc["input_ids"].tolist()
    part = Encoded(input_ids=[[t for t in row if t != tokenizer.pad_token_id] for row in ids], token_type_ids=None,
                   labels=torch.zeros(len(ids), dtype=torch.long), pad_id=tokenizer.pad_token_id)
    part.lengths = [len(x) for x in part.input_ids]
    return calibration_batches(part, seed=0, batches=2, batch_size=32)


@pytest.mark.parametrize("hidden,heads,head_dim", [(16, None, 16), (16, 2, 8), (24, 2, 12)])
def test_narrower_student_shapes(trained_teacher, hidden, heads, head_dim):
    teacher, tokenizer, enc = trained_teacher
    cfg = StudentConfig(layers=[0, 1], ffn_keep=0.5, hidden_size=hidden, num_heads=heads)
    student, steps = construct_student(cfg, teacher, ["neg", "pos"], 0, calibration=_calibration(tokenizer, enc))
    c = student.config
    assert c.hidden_size == hidden and c.hidden_size // c.num_attention_heads == head_dim
    s = student.state_dict()
    assert s["bert.embeddings.word_embeddings.weight"].shape == (len(tokenizer), hidden)
    assert s["bert.encoder.layer.0.attention.self.query.weight"].shape == (hidden, hidden)
    assert s["bert.encoder.layer.1.intermediate.dense.weight"].shape == (32, hidden)
    assert s["bert.encoder.layer.1.output.LayerNorm.weight"].shape == (hidden,)
    assert s["classifier.weight"].shape == (2, hidden)
    with torch.no_grad():
        assert student.eval()(**enc).logits.shape == (enc["input_ids"].shape[0], 2)
    assert steps[-1]["parameters"] == count_parameters(student) < steps[-2]["parameters"]
    assert steps[-1]["disk_bytes"] == 4 * count_parameters(student)


def test_full_width_equals_the_layer_copied_student(trained_teacher):
    teacher, tokenizer, enc = trained_teacher
    copied = build_student(StudentConfig(layers=[1], ffn_keep=0.5), teacher, ["neg", "pos"], 0).state_dict()
    same = build_student(StudentConfig(layers=[1], ffn_keep=0.5, hidden_size=32, num_heads=2), teacher, ["neg", "pos"],
                         0, calibration=_calibration(tokenizer, enc)).state_dict()
    assert same.keys() == copied.keys()
    assert all(torch.equal(same[k], copied[k]) for k in copied)


def _kl_to_teacher(student, teacher, enc) -> float:
    with torch.no_grad():
        t = teacher(**enc).logits.log_softmax(-1)
        s = student.eval()(**enc).logits.log_softmax(-1)
    return float((t.exp() * (t - s)).sum(-1).mean())


def test_teacher_derived_width_is_closer_to_the_teacher_than_random_init(trained_teacher):
    teacher, tokenizer, enc = trained_teacher
    calibration = _calibration(tokenizer, enc)
    derived = build_student(StudentConfig(layers=[0, 1], ffn_keep=1.0, hidden_size=24, num_heads=2), teacher,
                            ["neg", "pos"], 0, calibration=calibration)
    kl_derived = _kl_to_teacher(derived, teacher, enc)
    kl_random = [_kl_to_teacher(build_student(StudentConfig(init="shrink", num_layers=2, hidden_size=24, num_heads=2,
                                                            intermediate_size=64), teacher, ["neg", "pos"], seed),
                                teacher, enc) for seed in range(3)]
    assert kl_derived < min(kl_random)
    # and the teacher's labels are mostly kept
    with torch.no_grad():
        agree = (derived(**enc).logits.argmax(-1) == teacher(**enc).logits.argmax(-1)).float().mean()
    assert agree > 0.7


def test_width_errors(trained_teacher):
    teacher, tokenizer, enc = trained_teacher
    calibration = _calibration(tokenizer, enc)
    for cfg, needle in [
        (StudentConfig(hidden_size=64), "larger than the teacher's 32"),
        (StudentConfig(hidden_size=32, num_heads=4), "cannot be taken from the teacher's 2 heads"),
        (StudentConfig(hidden_size=24), "not a multiple of the teacher's head size 16; set student.num_heads"),
        (StudentConfig(hidden_size=24, num_heads=5), "not divisible"),
    ]:
        with pytest.raises(TextDistillError, match=needle):
            build_student(cfg, teacher, ["neg", "pos"], 0, calibration=calibration)
    with pytest.raises(TextDistillError, match="a few batches of task data"):
        build_student(StudentConfig(hidden_size=16), teacher, ["neg", "pos"], 0)


def test_narrower_student_gets_projections_and_head_checks(trained_teacher):
    teacher, tokenizer, enc = trained_teacher
    student = build_student(StudentConfig(layers=[0, 1], hidden_size=16), teacher, ["neg", "pos"], 0,
                            calibration=_calibration(tokenizer, enc))
    cfg = LossConfig(hidden_loss="mse", embedding_weight=1.0)
    matches = resolve_layer_map(cfg, 2, 2)
    check_models(cfg, student, teacher)
    projections = build_projections(cfg, matches, student, teacher)
    assert set(projections.maps) == {"layer0_to0", "layer1_to1", "embeddings"}
    assert projections.maps["embeddings"].in_features == 16 and projections.maps["embeddings"].out_features == 32
    with pytest.raises(TextDistillError, match="same number of attention heads"):
        check_models(LossConfig(attention_weight=1.0), student, teacher)  # 1 head against 2


def test_config_checks_for_the_new_fields():
    with pytest.raises(TextDistillError, match="not divisible by student.num_heads"):
        load_config(None, {"data.dataset": "rotten_tomatoes", "student.hidden_size": 30, "student.num_heads": 4})
    with pytest.raises(TextDistillError, match="student.vocab 'task'.*pretrained"):
        load_config(None, {"data.dataset": "rotten_tomatoes", "student.init": "pretrained", "student.path": "x",
                           "student.vocab": "task"})
    with pytest.raises(TextDistillError, match="not a valid choice"):
        load_config(None, {"data.dataset": "rotten_tomatoes", "student.vocab": "pruned"})
    assert load_config(None, {"data.dataset": "rotten_tomatoes"}).student.vocab == "teacher"
    with pytest.raises(TextDistillError, match="vocab_common .*student.vocab to 'task'"):
        load_config(None, {"data.dataset": "rotten_tomatoes", "student.vocab_common": 100})
    with pytest.raises(TextDistillError, match="vocab_common must be between 0"):
        load_config(None, {"data.dataset": "rotten_tomatoes", "student.vocab": "task", "student.vocab_common": -1})


# ---- end to end ----------------------------------------------------------------------------------


def test_distill_with_task_vocabulary_narrow_width_and_hidden_matching_then_export(tiny_overrides, tmp_path, caplog):
    from transformers import pipeline

    from textdistill.pipeline.bench import run_bench
    from textdistill.pipeline.run import run_distill
    from textdistill.pipeline.evaluate import run_eval
    from textdistill.pipeline.export import run_export

    teacher_dir = tmp_path / "teacher"  # the conftest teacher's words plus some the data never uses
    words = POSITIVE + NEGATIVE + FILLER + ["cat", "dog", "zebra", "##s"]
    teacher_tok = write_tokenizer(teacher_dir, words)
    tiny_bert(len(teacher_tok)).save_pretrained(str(teacher_dir))
    overrides = {**tiny_overrides, "teacher.path": str(teacher_dir), "student.vocab": "task", "student.hidden_size": 16, "loss.hidden_loss": "mse",
                 "loss.embedding_weight": 0.5, "train.epochs": 1}
    summary = run_distill(load_config(None, overrides))
    run = tmp_path / "run"
    steps = {r["step"]: r for r in summary["construction"]}
    assert list(steps) == ["teacher", "layers kept", "FFN narrowed", "vocabulary pruned", "width reduced"]
    params = [r["parameters"] for r in summary["construction"]]
    assert params == sorted(params, reverse=True) and params[-1] == summary["results"]["student"]["parameters"]
    assert "Student construction" in (run / "report.md").read_text(encoding="utf-8")
    for name in ("student", "baseline"):
        tok = AutoTokenizer.from_pretrained(str(run / name))
        assert len(tok) == len(teacher_tok) - 4 and "cat" not in tok.get_vocab()
        model = AutoModelForSequenceClassification.from_pretrained(str(run / name))
        assert model.config.hidden_size == 16 and model.get_input_embeddings().num_embeddings == len(tok)
    assert 0 <= summary["results"]["student"]["accuracy"] <= 1
    # the teacher-output cache was keyed by the teacher's ids: scoring the teacher-tokenised train split
    # again (what a student.vocab 'teacher' run does) is served from the cache
    from textdistill.data.labelled import load_classification_data
    from textdistill.hashing import folder_digest
    from textdistill.tasks.classification import cached_teacher_logits
    from textdistill.data.labelled import encode_splits
    from textdistill.precision import resolve_precision

    cfg = load_config(None, overrides)
    train = encode_splits(teacher_tok, load_classification_data(cfg.data), 16, None).train
    teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir)).eval()
    caplog.clear()
    cached_teacher_logits(teacher, train, 32, folder_digest(teacher_dir), 16,
                          resolve_precision(cfg.train.mixed_precision))
    assert "teacher scores: from the cache" in caplog.text
    # eval and bench read the text through each model's own tokenizer: they reproduce the run's numbers
    evaluated = run_eval(cfg, run / "student", teacher=teacher_dir)
    assert evaluated["accuracy"] == pytest.approx(summary["results"]["student"]["accuracy"])
    assert evaluated["teacher_agreement"] == pytest.approx(summary["results"]["student"]["teacher_agreement"])
    bench = run_bench(run, latency_examples=3, throughput_batches=1)
    assert bench["student onnx fp32"]["accuracy"] == pytest.approx(summary["results"]["student"]["accuracy"])
    assert bench["teacher pytorch fp32"]["accuracy"] == pytest.approx(summary["results"]["teacher"]["accuracy"])
    out = run_export(run, tmp_path / "exported")
    clf = pipeline("text-classification", model=out["output"], device=-1)
    assert clf("the film was very good and a cat")[0]["label"] in ("neg", "pos")  # 'cat' is not in its vocabulary


def test_distill_keeps_the_common_tokens_the_data_never_uses(tiny_overrides, tmp_path):
    from textdistill.pipeline.run import run_distill

    teacher_dir = tmp_path / "teacher"  # two words the data never uses come first in the vocabulary's order
    teacher_tok = write_tokenizer(teacher_dir, ["cat", "dog"] + POSITIVE + NEGATIVE + FILLER + ["zebra"])
    tiny_bert(len(teacher_tok)).save_pretrained(str(teacher_dir))
    overrides = {**tiny_overrides, "teacher.path": str(teacher_dir), "student.vocab": "task",
                 "student.vocab_common": 2, "train.epochs": 1, "report.baseline": False}
    run_distill(load_config(None, overrides))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "run" / "student"))
    assert {"cat", "dog"} <= set(tok.get_vocab()) and "zebra" not in tok.get_vocab()
    assert len(tok) == len(teacher_tok) - 1
    assert tok.tokenize("cat dog zebra") == ["cat", "dog", "[UNK]"]
