"""The `teacher` and `student` sections: which teacher, how it is made, and how the student is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textdistill.schema.fields import CLASSIFICATION, doc, section
from textdistill.schema.training import TrainConfig


@dataclass(frozen=True)
class TeacherArchitecture:
    """The encoder-decoder trained from scratch for `teacher.path: train` (seq2seq)."""

    num_layers: int = doc(6, "Encoder and decoder layers.", tasks=("seq2seq",))
    hidden_size: int = doc(256, "Hidden (model) size.", tasks=("seq2seq",))
    num_heads: int = doc(4, "Attention heads; must divide hidden_size.", tasks=("seq2seq",))
    intermediate_size: int = doc(1024, "Feed-forward size.", tasks=("seq2seq",))
    vocab_size: int = doc(8000, "Vocabulary of the BPE tokenizer trained on the data.", tasks=("seq2seq",))


# Most epochs a teacher made here trains for; early stopping usually ends it sooner.
TEACHER_MAX_EPOCHS = 10.0


def _teacher_finetune() -> TrainConfig:
    return TrainConfig(epochs=TEACHER_MAX_EPOCHS, learning_rate=5e-5, warmup_ratio=0.06, freeze_embeddings=False,
                       dropout=None, mixed_precision="no", early_stopping_patience=2)


@dataclass(frozen=True)
class TeacherConfig:
    path: str = doc(
        "builtin",
        "The teacher: a local Hugging Face folder (a fine-tuned sequence classifier, a causal LM or an "
        "encoder-decoder, by task), or 'builtin' (classification: fine-tune `base` on this run's data once "
        "and reuse the cached result; causal_lm: SmolLM2-135M-Instruct), or 'train' (seq2seq: an "
        "encoder-decoder trained here from scratch, `teacher.architecture`).",
    )
    base: str = doc(
        "minilm",
        "Pretrained encoder fine-tuned when `path` is 'builtin': 'minilm' (the packaged "
        "all-MiniLM-L6-v2), 'mpnet' (all-mpnet-base-v2 from five packaged parts, 12 layers, 109M parameters: "
        "about an hour to fine-tune on 2 CPU cores; see docs/guide/students.md for its install command) or a "
        "local Hugging Face folder.",
        tasks=CLASSIFICATION, instead="teacher.path names the generation teacher",
    )
    extra_paths: tuple[str, ...] = doc(
        (),
        "More fine-tuned teacher folders, besides `path`, whose targets are combined with its own "
        "(multi-teacher distillation). Each must have the data's label set and the same tokenizer.",
        tasks=CLASSIFICATION,
    )
    combine: Literal["mean", "weighted", "confidence"] = doc(
        "mean",
        "How several teachers' targets are combined, on their probabilities at loss.temperature: 'mean' "
        "(equal weights), 'weighted' (`weights`), 'confidence' (per example, each teacher weighted by its "
        "top probability). Logits are averaged instead when loss.soft is 'mse'.",
        tasks=CLASSIFICATION,
    )
    weights: tuple[float, ...] | None = doc(
        None, "Weight of each teacher for combine 'weighted': `path` first, then `extra_paths` in order.",
        tasks=CLASSIFICATION,
    )
    finetune: TrainConfig = section(
        _teacher_finetune,
        "Training settings of a teacher made here: the classifier fine-tuned from `base`, or the seq2seq teacher "
        "trained from scratch. By default it trains until validation stops improving (evaluated once per "
        "epoch, `early_stopping_patience` 2, at most `epochs` 10) and keeps its best checkpoint, so the budget "
        "follows the data; float32 and the model's own dropout: the teacher is the quality anchor, made once "
        "and cached.",
        tasks=("classification", "seq2seq"),
    )
    learning_rates: tuple[float, ...] = doc(
        (),
        "Learning-rate search for the built-in classification teacher: each value is a fine-tuning of its own "
        "(cached like any other) and the teacher with the best validation score (`finetune.select_on`) is kept; "
        "the report lists them all. Empty uses teacher.finetune.learning_rate.",
        tasks=CLASSIFICATION,
    )
    ensemble_trials: bool = doc(
        False,
        "With `learning_rates`: every trial teaches, not only the best. Their targets are combined like several "
        "teachers' (`combine`), and the best on validation gives the student its layers. On small data, where "
        "the validation split is too small to tell the trials apart, the combination is the steadier teacher; "
        "it costs one scoring pass per trial.",
        tasks=CLASSIFICATION,
    )
    architecture: TeacherArchitecture = section(
        TeacherArchitecture, "Sizes of the seq2seq teacher trained here (teacher.path 'train').", tasks=("seq2seq",)
    )
    batch_size: int = doc(128, "Batch size when a model scores data without gradients (teacher signal, "
                               "evaluation); batches of long texts are cut to 4,096 padded tokens, which runs "
                               "faster on a CPU.")
    scoring: Literal["auto", "float32", "int8"] = doc(
        "auto",
        "How the frozen teacher scores the training data once (the scores are cached): 'auto' in the run's "
        "precision (`train.mixed_precision`: ONNX Runtime float32 on a CPU, bfloat16 autocast where the CPU "
        "has it natively, the GPU's precision on a GPU); 'float32' in float32 whatever the training's autocast "
        "(ONNX Runtime on a CPU, PyTorch on a GPU; on a CPU whose bfloat16 is slow it is also the faster); "
        "'int8' through ONNX Runtime with int8 weights, about twice as fast on a CPU: a slightly "
        "different teacher, so it is checked on validation first and not used if its accuracy there is more "
        "than a point below the full-precision teacher's. CPU only: a GPU scores as with 'auto'.",
        tasks=CLASSIFICATION, instead="generation teachers score in the run's precision",
    )


@dataclass(frozen=True)
class StudentConfig:
    init: Literal["teacher_layers", "shrink", "pretrained"] = doc(
        "teacher_layers",
        "How the student is made: 'teacher_layers' copies chosen teacher layers (DistilBERT's "
        "initialisation); 'shrink' is the teacher's architecture made smaller by config, randomly "
        "initialised; 'pretrained' loads `path`.",
    )
    path: str | None = doc(None, "Folder of a pretrained Hugging Face model, for init 'pretrained'.")
    source: str = doc(
        "teacher",
        "The model whose layers, embeddings and tokenizer a 'teacher_layers' student is made of: 'teacher', or a "
        "pretrained encoder ('minilm', 'mpnet' or a local folder), e.g. a small student for a large teacher. A "
        "student whose tokenizer is not the teacher's learns from the teacher's outputs: the teacher reads the "
        "same text (and the same variants, as text) through its own tokenizer; intermediate-layer matching "
        "needs the teacher's tokenizer.",
        tasks=CLASSIFICATION, instead="a generation student is made of the teacher's layers",
    )
    fine_tune_source: bool = doc(
        False,
        "Fine-tune `source` on the labelled data first (the built-in teacher's recipe, cached like it) and build "
        "the student, and the no-teacher baseline, from the fine-tuned layers: a student made of a small encoder "
        "that already knows the task, as a 'teacher_layers' student of the teacher itself does.",
        tasks=CLASSIFICATION, instead="a generation student is made of the teacher's layers",
    )
    layers: tuple[int, ...] | None = doc(
        None,
        "Teacher layers copied into the student (0-based), for 'teacher_layers'; for seq2seq the decoder's "
        "layers. Empty takes every third layer ending with the last (a 6-layer teacher gives [2, 5]).",
    )
    encoder_layers: tuple[int, ...] | None = doc(
        None, "Teacher encoder layers kept by a seq2seq student; empty keeps the whole encoder.", tasks=("seq2seq",),
        instead="student.layers lists the layers kept",
    )
    ffn_keep: float = doc(
        0.5,
        "Share of each copied layer's feed-forward neurons kept (the strongest by weight magnitude), for "
        "'teacher_layers'; 1.0 keeps the whole block. Fewer neurons: a faster and smaller student.",
        tasks=CLASSIFICATION, instead="a generation student keeps whole layers (student.layers)",
    )
    num_layers: int = doc(2, "Number of transformer layers, for 'shrink' (for seq2seq: decoder layers).")
    hidden_size: int | None = doc(
        None,
        "Hidden (residual) size; empty keeps the teacher's. For 'shrink' any size (random init). For "
        "'teacher_layers' (classification) at most the teacher's: the copied weights are sliced to the teacher's "
        "residual dimensions with the largest mean |activation| on a few batches of training text (one set for "
        "all layers; see textdistill/models/width.py).",
    )
    num_heads: int | None = doc(
        None,
        "Attention heads; must divide hidden_size. Empty: the teacher's for 'shrink'; for 'teacher_layers', "
        "hidden_size / the teacher's head size (whole teacher heads kept, the strongest by weight magnitude). "
        "For 'teacher_layers' at most the teacher's heads, of at most its head size.",
    )
    intermediate_size: int | None = doc(None, "Feed-forward size, for 'shrink'; empty is 4 x hidden size.")
    vocab: Literal["teacher", "task"] = doc(
        "teacher",
        "Student vocabulary: 'teacher' (the teacher's tokenizer and embedding rows) or 'task' (only the special "
        "tokens and the tokens the teacher's tokenizer produces on the train, unlabelled and validation text; "
        "the student gets a pruned WordPiece tokenizer that still reads raw text, unseen words fall back to "
        "sub-pieces or [UNK]). For 'teacher_layers' and 'shrink'; WordPiece tokenizers only.",
        tasks=CLASSIFICATION,
    )
    vocab_common: int = doc(
        0,
        "With vocab 'task': also keep the teacher's N most common tokens (the first N multi-character tokens in "
        "the vocabulary's own order, which BERT-family WordPiece vocabularies sort by corpus frequency). Words "
        "the task's text never showed then keep their own pretrained embedding rows in the student instead of "
        "being split into shorter pieces. Costs N x hidden size parameters at most, no speed.",
        tasks=CLASSIFICATION,
    )
