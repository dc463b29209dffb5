"""Typed run configuration.

A run is described by one YAML file. YAML is only the serialisation: the file is parsed with
`yaml.safe_load` (no tags, no code), then validated into the dataclasses below. Every field carries its
documentation in `metadata["doc"]`; the CLI builds its `--section.field` flags and their `--help` text
from it, so the file, the flags and the help can never drift apart.

Precedence: dataclass defaults < YAML file < CLI flags. Unknown keys and wrong types are errors that
list the valid choices (and suggest the closest name).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from textdistill.errors import TextDistillError, preview


def doc(default: Any, text: str, **kwargs: Any) -> Any:
    """A dataclass field with its documentation attached."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": text, **kwargs})
    return field(default=default, metadata={"doc": text, **kwargs})


def section(factory: type, text: str) -> Any:
    return field(default_factory=factory, metadata={"doc": text})


@dataclass
class DataConfig:
    dataset: str | None = doc(
        None,
        "Built-in dataset to use instead of files: 'rotten_tomatoes' (movie-review sentiment, "
        "fresh/rotten, with unlabelled plot synopses) or 'bbc_news' (2,225 BBC articles in 5 topics). Leave empty to read `train` (and the other files).",
    )
    train: str | None = doc(None, "Labelled training file (.csv, .tsv, .jsonl or .parquet).")
    validation: str | None = doc(
        None, "Labelled validation file. If empty, a `validation_fraction` of train is held out by seed."
    )
    test: str | None = doc(None, "Labelled test file. If empty, a `test_fraction` of train is held out by seed.")
    unlabeled: str | None = doc(
        None,
        "File of extra unlabelled text (same text column(s)); used with the teacher's soft targets only.",
    )
    use_builtin_unlabeled: bool = doc(
        False, "With a built-in dataset, also train on its unlabelled text (teacher soft targets only)."
    )
    text_column: str = doc("text", "Column holding the text (the first sentence for pairs).")
    text_pair_column: str | None = doc(None, "Column holding the second sentence, for sentence-pair tasks.")
    label_column: str = doc("label", "Column holding the label (names or integers).")
    validation_fraction: float = doc(0.1, "Share of train held out for validation when no file is given.")
    test_fraction: float = doc(0.1, "Share of train held out for test when no file is given.")
    split_seed: int = doc(0, "Seed of the deterministic train/validation/test split.")
    max_length: int = doc(64, "Maximum tokens per example; longer texts are truncated (with a warning).")
    augment_copies: int = doc(
        1,
        "Teacher-labelled variants of each training text added to the student's data (tokens deleted, "
        "masked or replaced; see textdistill/data/augment.py); 0 turns augmentation off. Variants add "
        "data, not steps: the student trains for as many optimizer steps as without them (the baseline's "
        "budget), evaluated on the same schedule.",
    )
    augment_share: float = doc(0.3, "Share of a variant's tokens that are changed (deleted, masked or replaced).")
    augment_kinds: list[str] = doc(
        ["tokens"],
        "How variants are made, one kind drawn per variant: 'tokens' (scattered tokens deleted, masked or "
        "replaced), 'span' (one contiguous span of augment_share of the tokens deleted), 'mix' (the start of "
        "the text joined to the end of another training text; single-text tasks only).",
    )
    max_train_examples: int | None = doc(
        None, "Use only the first N training examples after the split (quick trials)."
    )


@dataclass
class TrainConfig:
    epochs: float = doc(2.0, "Passes over the training data (may be fractional).")
    max_steps: int | None = doc(None, "Stop after this many optimizer steps (overrides epochs when smaller).")
    batch_size: int = doc(32, "Examples per micro-batch.")
    grad_accum_steps: int = doc(1, "Micro-batches per optimizer step; the update equals one big batch.")
    learning_rate: float = doc(3e-4, "Peak AdamW learning rate.")
    weight_decay: float = doc(0.01, "AdamW weight decay (not applied to biases and LayerNorm).")
    warmup_ratio: float = doc(0.1, "Share of steps with linear warmup before linear decay to zero.")
    max_grad_norm: float | None = doc(1.0, "Clip the gradient norm to this value; empty turns clipping off.")
    eval_every: int = doc(0, "Evaluate on validation every N optimizer steps; 0 means once per epoch.")
    early_stopping_patience: int | None = doc(
        None, "Stop after this many evaluations without improvement; empty trains for the full budget."
    )
    freeze_embeddings: bool = doc(
        True,
        "Keep the word-embedding matrix fixed. It holds most of a small student's parameters, so freezing "
        "it makes each step much cheaper; the copied teacher embeddings are already good.",
    )
    seed: int = doc(42, "Seed for initialisation, data order and dropout.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = doc(
        "auto",
        "Autocast precision of training and of teacher scoring: 'auto' (bfloat16 where the CPU or GPU "
        "computes it natively: AVX512-BF16 or AMX CPUs, bf16-capable GPUs; else float32), 'no' (float32), "
        "'bf16', or 'fp16' (GPU only). Weights and optimizer state stay float32; evaluation runs in float32.",
    )
    dropout: float | None = doc(
        0.0,
        "Dropout probability while training (every dropout layer of the model); empty keeps the model's "
        "own (0.1 for BERT). 0 by default for students: the teacher's soft targets regularise, and dropout "
        "costs about a quarter of a small student's step (docs/speed.md).",
    )
    threads: int | None = doc(None, "CPU threads for torch; empty keeps torch's default.")
    progress: bool = doc(True, "Show a progress bar with loss, rate and ETA.")
    checkpoint_every: int = doc(
        500,
        "Write a resumable training checkpoint every N optimizer steps (also at the end and on Ctrl-C); "
        "0 writes only those two. `distill --resume` continues from the newest one.",
    )
    keep_checkpoints: int = doc(2, "Keep the newest N training checkpoints; older ones are deleted.")
    deterministic: bool = doc(
        False,
        "Use only deterministic kernels (torch.use_deterministic_algorithms), so a resumed GPU run repeats an "
        "uninterrupted one bit for bit; slower on GPU. CPU runs are deterministic without it.",
    )


@dataclass
class TeacherConfig:
    path: str = doc(
        "builtin",
        "Folder of a fine-tuned Hugging Face sequence-classification teacher, or 'builtin': fine-tune "
        "`base` on this run's data once and reuse the cached result.",
    )
    base: str = doc(
        "minilm",
        "Pretrained encoder fine-tuned when `path` is 'builtin': 'minilm' (the packaged "
        "all-MiniLM-L6-v2), 'mpnet' (all-mpnet-base-v2 from five packaged parts, 12 layers, a GPU-sized "
        "teacher; see docs/students.md for its install command) or a local Hugging Face folder.",
    )
    extra_paths: list[str] = doc(
        [],
        "More fine-tuned teacher folders, besides `path`, whose targets are combined with its own "
        "(multi-teacher distillation). Each must have the data's label set and the same tokenizer.",
    )
    combine: Literal["mean", "weighted", "confidence"] = doc(
        "mean",
        "How several teachers' targets are combined, on their probabilities at loss.temperature: 'mean' "
        "(equal weights), 'weighted' (`weights`), 'confidence' (per example, each teacher weighted by its "
        "top probability). Logits are averaged instead when loss.soft is 'mse'.",
    )
    weights: list[float] | None = doc(
        None, "Weight of each teacher for combine 'weighted': `path` first, then `extra_paths` in order."
    )
    finetune: TrainConfig = section(
        lambda: TrainConfig(epochs=1.0, learning_rate=5e-5, warmup_ratio=0.06, freeze_embeddings=False, dropout=None,
                            mixed_precision="no"),
        "Training settings for fine-tuning the teacher (float32 and the model's own dropout by default: the "
        "teacher is the quality anchor and is fine-tuned once, then cached).",
    )
    batch_size: int = doc(128, "Batch size when the teacher scores data (no gradients); batches of long texts are "
                               "cut to 4,096 padded tokens, which runs faster on a CPU.")


@dataclass
class StudentConfig:
    init: Literal["teacher_layers", "shrink", "pretrained"] = doc(
        "teacher_layers",
        "How the student is made: 'teacher_layers' copies chosen teacher layers (DistilBERT's "
        "initialisation); 'shrink' is the teacher's architecture made smaller by config, randomly "
        "initialised; 'pretrained' loads `path`.",
    )
    path: str | None = doc(None, "Folder of a pretrained Hugging Face model, for init 'pretrained'.")
    layers: list[int] | None = doc(
        None,
        "Teacher layers copied into the student (0-based), for 'teacher_layers'; empty takes every third "
        "layer ending with the last (a 6-layer teacher gives [2, 5]).",
    )
    ffn_keep: float = doc(
        0.5,
        "Share of each copied layer's feed-forward neurons kept (the strongest by weight magnitude), for "
        "'teacher_layers'; 1.0 keeps the whole block. Halving it cuts batch-1 latency by about a quarter.",
    )
    num_layers: int = doc(2, "Number of transformer layers, for 'shrink'.")
    hidden_size: int | None = doc(
        None,
        "Hidden (residual) size; empty keeps the teacher's. For 'shrink' any size (random init). For "
        "'teacher_layers' at most the teacher's: the copied weights are sliced to the teacher's residual "
        "dimensions with the largest mean |activation| on a few batches of training text (one set for all "
        "layers; see textdistill/models/width.py).",
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
    )


@dataclass
class LossConfig:
    alpha: float = doc(0.5, "Weight of the cross-entropy on gold labels.")
    beta: float = doc(0.5, "Weight of the soft term against the teacher.")
    temperature: float = doc(2.0, "Softmax temperature of the soft term (the KL is scaled by T^2).")
    soft: Literal["kl", "mse"] = doc(
        "kl", "Soft term: 'kl' = KL(teacher_T || student_T) (Hinton), 'mse' = MSE between raw logits."
    )
    schedule: Literal["constant", "linear", "cosine"] = doc(
        "constant",
        "How temperature, alpha and beta move over training, from their value to their `*_end` value: "
        "'constant' (the `*_end` values are ignored), 'linear', or 'cosine' (slow at both ends).",
    )
    temperature_end: float | None = doc(None, "Temperature at the end of training; empty keeps `temperature`.")
    alpha_end: float | None = doc(None, "Cross-entropy weight at the end of training; empty keeps `alpha`.")
    beta_end: float | None = doc(None, "Soft-term weight at the end of training; empty keeps `beta`.")
    soft_weighting: Literal["none", "confidence", "entropy"] = doc(
        "none",
        "Per-example weight of the soft term from the teacher: 'none' (1), 'confidence' (the teacher's top "
        "probability), 'entropy' (1 - H(p)/log C: 1 for a certain teacher, 0 for a uniform one).",
    )
    hidden_loss: Literal["none", "mse", "cosine"] = doc(
        "none",
        "Intermediate-layer matching of hidden states: 'mse' (TinyBERT), 'cosine' (1 - cos, DistilBERT), "
        "or 'none'. Runs the teacher live at every step (its hidden states are not cached).",
    )
    hidden_weight: float = doc(1.0, "Weight of the hidden-state term (summed over the matched layers).")
    attention_weight: float = doc(
        0.0,
        "Weight of attention-distribution matching KL(A_teacher || A_student) on the matched layers, "
        "averaged over heads (TinyBERT, MiniLM); needs the same number of heads. 0 turns it off.",
    )
    embedding_weight: float = doc(
        0.0, "Weight of matching the embedding-layer output (with `hidden_loss`, or MSE if that is 'none'); 0 is off."
    )
    layer_map: Literal["uniform", "last_k", "skip"] = doc(
        "uniform",
        "Which teacher layer each student layer matches when `layer_pairs` is empty: 'uniform' (student "
        "layer i of n to teacher layer round((i+1)*N/n)-1, ending with the last; equals the default "
        "copied layers), 'skip' (every N//n-th teacher layer, Patient-KD skip), 'last_k' (the last `last_k` "
        "student layers to the last `last_k` teacher layers, Patient-KD last).",
    )
    layer_pairs: list[list[int]] | None = doc(
        None, "Explicit layer map: [[student layer, teacher layer], ...], 0-based; overrides `layer_map`."
    )
    last_k: int | None = doc(None, "Layers matched by `layer_map: last_k`; empty means all student layers.")


@dataclass
class ReportConfig:
    baseline: bool = doc(True, "Also train the same student without a teacher (labels only) for comparison.")
    latency_examples: int = doc(200, "Test texts timed one at a time for batch-1 latency.")
    throughput_batches: int = doc(10, "Batches of 32 timed for throughput.")


GENERATION_TASKS = ("causal_lm", "seq2seq")
BUILTIN_GENERATION_DATASETS = {"bible_en": "causal_lm", "bible_en_es": "seq2seq"}


@dataclass
class GenerationConfig:
    """Settings of the generation tasks (`task: causal_lm | seq2seq`); ignored by classification."""

    dataset: str | None = doc(
        None,
        "Built-in data: 'bible_en' (English Bible verses, language modelling) or 'bible_en_es' (English-Spanish "
        "verse pairs, translation). Leave empty to read `train` (and the other files).",
    )
    train: str | None = doc(
        None,
        "Training file: prompt/response JSONL ({\"prompt\", \"response\"}), parallel JSONL ({\"source\", "
        "\"target\"}), parallel TSV (source<TAB>target) or plain text (.txt, one example per line).",
    )
    validation: str | None = doc(None, "Validation file (same format); empty holds out `validation_fraction` of train.")
    test: str | None = doc(None, "Test file (same format); empty holds out `test_fraction` of train.")
    validation_fraction: float = doc(0.05, "Share of train held out for validation when no file is given.")
    test_fraction: float = doc(0.05, "Share of train held out for test when no file is given.")
    split_seed: int = doc(0, "Seed of the deterministic train/validation/test split.")
    max_train_examples: int | None = doc(None, "Use only the first N training examples after the split.")
    max_eval_examples: int = doc(200, "Validation and test examples used at most (perplexity, BLEU/chrF, ROUGE-L).")
    source_prefix: str = doc(
        "", "Text put before every source/prompt (e.g. 'Translate to Spanish: ' for a causal LM on parallel data).")
    max_length: int = doc(128, "Most tokens of a causal-LM example (prompt + response), or of a seq2seq source.")
    max_target_length: int = doc(128, "Most tokens of a seq2seq target.")
    chat_template: bool = doc(
        True, "Wrap prompt/response pairs in the tokenizer's chat template when it has one (causal LM).")
    loss: str = doc(
        "forward_kl",
        "Token-level loss against the teacher (textdistill.losses.TOKEN_LOSSES): 'forward_kl' = KL(teacher || "
        "student), 'reverse_kl' = KL(student || teacher), 'jsd', 'skew_kl', 'skew_reverse_kl', 'total_variation'.",
    )
    ce_weight: float = doc(0.5, "Weight of the cross-entropy on the reference (or sequence-KD) tokens.")
    kd_weight: float = doc(0.5, "Weight of the token-level loss against the teacher (scaled by T^2).")
    temperature: float = doc(1.0, "Softmax temperature of the token-level loss; the term is multiplied by T^2.")
    jsd_beta: float = doc(0.5, "beta of loss 'jsd': 0 is forward KL, 1 is reverse KL.")
    skew_alpha: float = doc(0.1, "alpha of the skew losses: 0 is the plain KL, 1 gives 0.")
    sequence_kd: Literal["off", "greedy", "beam", "sample"] = doc(
        "off",
        "Sequence-level KD (Kim & Rush 2016): the teacher writes the training targets once (cached on disk) by "
        "'greedy', 'beam' or 'sample' decoding; 'off' trains on the references.",
    )
    num_beams: int = doc(4, "Beams for sequence_kd 'beam'.")
    with_references: bool = doc(False, "With sequence_kd, train on the references too (twice the examples).")
    on_policy_fraction: float = doc(
        0.0,
        "Share of optimizer steps whose batches are the student's own samples (no gradient through sampling), "
        "scored token by token by the teacher (GKD, Agarwal et al. 2024). 0 turns it off.",
    )
    on_policy_prompt_tokens: int = doc(
        8, "Prompt length for on-policy samples from data without a prompt (plain text): its first N tokens.")
    sample_temperature: float = doc(1.0, "Sampling temperature of on-policy samples and sequence_kd 'sample'.")
    topk: int = doc(
        0,
        "Top-k teacher mode: the teacher's k largest log-probs and leftover mass per token, cached on disk, "
        "instead of its full distribution (forward_kl only); 0 uses the full distribution, scored live.",
    )
    chunk_size: int = doc(0, "Compute the token loss this many positions at a time (memory-bounded); 0 = all at once.")
    max_new_tokens: int = doc(64, "Most tokens generated per example (sequence KD, on-policy, BLEU/chrF, speed).")
    student_layers: list[int] | None = doc(
        None,
        "Teacher decoder layers kept by the student (student.init 'teacher_layers'), 0-based; empty takes every "
        "third ending with the last. For seq2seq these are decoder layers.",
    )
    student_encoder_layers: list[int] | None = doc(
        None, "Teacher encoder layers kept by a seq2seq student; empty keeps the whole encoder.")
    teacher_layers: int = doc(6, "Encoder and decoder layers of a seq2seq teacher trained here (teacher.path 'train').")
    teacher_d_model: int = doc(256, "Hidden size of a seq2seq teacher trained here.")
    teacher_heads: int = doc(4, "Attention heads of a seq2seq teacher trained here.")
    teacher_ffn: int = doc(1024, "Feed-forward size of a seq2seq teacher trained here.")
    vocab_size: int = doc(8000, "Vocabulary of the tokenizer trained on the data for teacher.path 'train'.")
    speed_prompts: int = doc(20, "Test prompts decoded greedily one at a time to time generation.")


# Named student sizes for sweep.students: the share of the teacher's layers kept (at least one).
STUDENT_SIZES = {"quarter": 0.25, "third": 1 / 3, "half": 0.5}


@dataclass
class SweepConfig:
    temperatures: list[float] = doc(
        [1.0, 2.0, 4.0], "Values of loss.temperature tried by `distill --sweep`; empty keeps loss.temperature."
    )
    alphas: list[float] = doc(
        [0.2, 0.5, 0.8],
        "Values of loss.alpha tried by `distill --sweep`, each with loss.beta = 1 - alpha; empty keeps both.",
    )
    students: list[int | str] = doc(
        [],
        "Student sizes tried by `distill --sweep`: layer counts (2) or names of a share of the teacher's "
        "layers ('quarter', 'third', 'half'). Sets student.layers (evenly spread, ending with the last "
        "teacher layer) or student.num_layers for 'shrink'. Empty keeps the configured student.",
    )
    time_budget_s: float = doc(
        1800.0,
        "Wall-clock seconds for the sweep's trials. Trials are shortened (fewer steps, the same for all) "
        "to fit; those that still do not fit are reported as skipped. Fine-tuning and scoring with the "
        "teacher are one-off costs, cached for the final run, and not counted.",
    )
    min_trial_steps: int = doc(
        20, "Fewest optimizer steps a trial may be shortened to; below that, trials are skipped instead."
    )


@dataclass
class RunConfig:
    output_dir: str = doc("runs/default", "Run folder: config, metrics, checkpoints, models and report.")
    task: Literal["classification", "causal_lm", "seq2seq"] = doc(
        "classification",
        "Task family: 'classification', 'causal_lm' (decoder-only language model) or 'seq2seq' (encoder-decoder); "
        "the generation tasks read the `generation` section (docs/generation.md).",
    )
    data: DataConfig = section(DataConfig, "Where the examples come from and how they are tokenised.")
    teacher: TeacherConfig = section(TeacherConfig, "The teacher model.")
    student: StudentConfig = section(StudentConfig, "How the student is built.")
    loss: LossConfig = section(LossConfig, "The distillation objective.")
    train: TrainConfig = section(TrainConfig, "Student training settings.")
    report: ReportConfig = section(ReportConfig, "What the final report measures.")
    sweep: SweepConfig = section(SweepConfig, "The grid tried by `distill --sweep` on validation.")
    generation: GenerationConfig = section(GenerationConfig, "Data, objective and decoding of the generation tasks.")
    trust_remote_code: bool = doc(
        False,
        "Let model folders run their own Python code (an `auto_map` in config.json). Off: such folders are "
        "refused. Turn on only for folders you trust.",
    )


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join("empty" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints widened to float where allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except TextDistillError:
                pass
        raise TextDistillError(f"{where}: expected {_type_name(tp)}, got {preview(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise TextDistillError(
                f"{where}: {preview(value)} is not a valid choice; use one of {', '.join(map(repr, choices))}"
            )
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TextDistillError(f"{where}: expected {_type_name(tp)}, got {preview(value)}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # .nan and .inf are valid YAML but no setting means anything with them
            if abs(value) > 1e300 or not math.isfinite(value):
                raise TextDistillError(f"{where}: expected a finite number, got {preview(value)}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise TextDistillError(f"{where}: expected {_type_name(tp)}, got {preview(value)}")


def _unknown_key(cls: type, key: str, where: str) -> TextDistillError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TextDistillError(f"{where}: unknown key {preview(key)}{hint}; valid keys: {', '.join(names)}")


def from_dict(cls: type, values: dict, where: str = "config", base: Any = None) -> Any:
    """Set the fields of `base` (default: `cls()`) from a plain dict, checking every key and type.

    Nested sections update the section object already in `base`, so a section keeps its own defaults
    for the keys a file leaves out.
    """
    obj = base if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in names:
            raise _unknown_key(cls, key, where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise TextDistillError(f"{where}.{key}: expected a mapping of {tp.__name__} fields, got {preview(value)}")
            from_dict(tp, value, f"{where}.{key}", getattr(obj, key))
        else:
            setattr(obj, key, _convert(value, tp, f"{where}.{key}"))
    return obj


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def _check_ranges(cfg: RunConfig) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise TextDistillError(msg)

    for name, t in (("train", cfg.train), ("teacher.finetune", cfg.teacher.finetune)):
        need(t.batch_size >= 1, f"{name}.batch_size must be at least 1, got {t.batch_size}")
        need(t.grad_accum_steps >= 1, f"{name}.grad_accum_steps must be at least 1, got {t.grad_accum_steps}")
        need(t.epochs > 0, f"{name}.epochs must be positive, got {t.epochs}")
        need(t.max_steps is None or t.max_steps >= 1, f"{name}.max_steps must be at least 1 or empty")
        need(t.learning_rate > 0, f"{name}.learning_rate must be positive, got {t.learning_rate}")
        need(0 <= t.warmup_ratio < 1, f"{name}.warmup_ratio must be in [0, 1), got {t.warmup_ratio}")
        need(t.eval_every >= 0, f"{name}.eval_every must be 0 (per epoch) or positive, got {t.eval_every}")
        need(t.max_grad_norm is None or t.max_grad_norm > 0, f"{name}.max_grad_norm must be positive or empty")
        need(t.threads is None or t.threads >= 1, f"{name}.threads must be at least 1 or empty")
        need(t.checkpoint_every >= 0, f"{name}.checkpoint_every must be 0 or positive, got {t.checkpoint_every}")
        need(t.dropout is None or 0 <= t.dropout < 1, f"{name}.dropout must be in [0, 1) or empty, got {t.dropout}")
        need(t.keep_checkpoints >= 1, f"{name}.keep_checkpoints must be at least 1, got {t.keep_checkpoints}")
    loss = cfg.loss
    need(loss.temperature > 0, f"loss.temperature must be positive, got {loss.temperature}")
    need(loss.alpha >= 0 and loss.beta >= 0, "loss.alpha and loss.beta must be non-negative")
    need(loss.alpha + loss.beta > 0, "loss.alpha and loss.beta are both 0: nothing to train on; set one above 0")
    need(loss.temperature_end is None or loss.temperature_end > 0,
         f"loss.temperature_end must be positive or empty, got {loss.temperature_end}")
    for name in ("alpha_end", "beta_end", "hidden_weight", "attention_weight", "embedding_weight"):
        v = getattr(loss, name)
        need(v is None or v >= 0, f"loss.{name} must be non-negative, got {v}")
    need(loss.last_k is None or loss.last_k >= 1, f"loss.last_k must be at least 1 or empty, got {loss.last_k}")
    for pair in loss.layer_pairs or []:
        need(len(pair) == 2 and min(pair) >= 0,
             f"loss.layer_pairs entry {preview(pair)} must be [student layer, teacher layer] with both 0 or more")
    d = cfg.data
    need(d.max_length >= 8, f"data.max_length must be at least 8 tokens, got {d.max_length}")
    need(d.max_train_examples is None or d.max_train_examples >= 2,
         f"data.max_train_examples must be at least 2 or empty, got {d.max_train_examples}")
    need(0 <= d.augment_copies <= 20, f"data.augment_copies must be in [0, 20], got {d.augment_copies}")
    need(0 < d.augment_share < 1, f"data.augment_share must be in (0, 1), got {d.augment_share}")
    need(bool(d.augment_kinds) and set(d.augment_kinds) <= {"tokens", "span", "mix"},
         f"data.augment_kinds must be a non-empty list of 'tokens', 'span', 'mix'; got {preview(d.augment_kinds)}")
    need("mix" not in d.augment_kinds or d.text_pair_column is None,
         "data.augment_kinds 'mix' joins two single texts; for a sentence-pair task use 'tokens' or 'span'")
    for frac in ("validation_fraction", "test_fraction"):
        v = getattr(d, frac)
        need(0 <= v < 1, f"data.{frac} must be in [0, 1), got {v}")
    need(d.validation_fraction + d.test_fraction < 0.9, "data.validation_fraction + data.test_fraction must be < 0.9")
    need(cfg.task in GENERATION_TASKS or d.dataset is not None or d.train is not None,
         "no data: set data.dataset (e.g. 'rotten_tomatoes') or data.train to a labelled file")
    s = cfg.student
    if s.init == "pretrained":
        need(s.path is not None, "student.init is 'pretrained' but student.path is empty; give the model folder")
    if s.init == "teacher_layers":
        need(s.layers is None or len(s.layers) >= 1,
             "student.layers is an empty list; list the teacher layers to copy, e.g. [2, 5], or leave it empty (null)")
        need(s.layers is None or len(set(s.layers)) == len(s.layers), f"student.layers has repeats: {preview(s.layers)}")
        need(0 < s.ffn_keep <= 1, f"student.ffn_keep must be in (0, 1], got {s.ffn_keep}")
    need(s.num_layers >= 1, f"student.num_layers must be at least 1, got {s.num_layers}")
    for name in ("hidden_size", "num_heads", "intermediate_size"):
        v = getattr(s, name)
        need(v is None or v >= 1, f"student.{name} must be at least 1 or empty, got {v}")
    if s.hidden_size is not None and s.num_heads is not None:
        need(s.hidden_size % s.num_heads == 0,
             f"student.hidden_size {s.hidden_size} is not divisible by student.num_heads {s.num_heads}; pick sizes where it is")
    need(s.vocab == "teacher" or s.init != "pretrained",
         "student.vocab 'task' prunes the teacher's vocabulary, but student.init 'pretrained' brings its own "
         "tokenizer; set student.vocab to 'teacher' or student.init to 'teacher_layers' or 'shrink'")
    t = cfg.teacher
    need("builtin" not in t.extra_paths, "teacher.extra_paths lists 'builtin'; extra teachers are fine-tuned "
         "folders (make one with textdistill teacher)")
    if t.combine == "weighted":
        n = 1 + len(t.extra_paths)
        need(t.weights is not None and len(t.weights) == n,
             f"teacher.combine is 'weighted' but teacher.weights has {len(t.weights or [])} values for {n} "
             "teacher(s); give one per teacher: path first, then extra_paths")
        need(min(t.weights) >= 0 and sum(t.weights) > 0,
             f"teacher.weights must be non-negative with a positive sum, got {preview(t.weights)}")
    else:
        need(t.weights is None, f"teacher.weights is only used with teacher.combine 'weighted' (it is {t.combine!r}); "
             "remove it or set teacher.combine: weighted")
    sw = cfg.sweep
    need(all(v > 0 for v in sw.temperatures), f"sweep.temperatures must all be positive, got {preview(sw.temperatures)}")
    need(all(0 <= v <= 1 for v in sw.alphas), f"sweep.alphas must all be in [0, 1] (beta = 1 - alpha), got {preview(sw.alphas)}")
    for size in sw.students:
        need(isinstance(size, str) and size in STUDENT_SIZES or isinstance(size, int) and size >= 1,
             f"sweep.students entry {preview(size)} must be a layer count (at least 1) or one of {', '.join(STUDENT_SIZES)}")
    need(not sw.students or s.init != "pretrained",
         "sweep.students needs student.init 'teacher_layers' or 'shrink' (a pretrained student has a fixed size)")
    need(sw.time_budget_s > 0, f"sweep.time_budget_s must be positive, got {sw.time_budget_s}")
    need(sw.min_trial_steps >= 1, f"sweep.min_trial_steps must be at least 1, got {sw.min_trial_steps}")
    if cfg.task in GENERATION_TASKS:
        _check_generation(cfg, need)
    need(cfg.report.latency_examples >= 1, "report.latency_examples must be at least 1")
    need(cfg.report.throughput_batches >= 1, "report.throughput_batches must be at least 1")


def _check_generation(cfg: RunConfig, need) -> None:
    """Cross-field checks of the generation tasks; each message names the field and the fix."""
    from textdistill.losses import TOKEN_LOSSES

    g, task = cfg.generation, cfg.task
    need(g.dataset is not None or g.train is not None,
         f"task {task!r} has no data: set generation.dataset ('bible_en' or 'bible_en_es') or generation.train")
    if g.dataset is not None:
        need(g.dataset in BUILTIN_GENERATION_DATASETS,
             f"generation.dataset {preview(g.dataset)} is not built in; use one of {', '.join(BUILTIN_GENERATION_DATASETS)}"
             " or leave it empty and set generation.train")
        need(g.train is None, "generation.dataset and generation.train are both set; keep one of them")
    need(g.loss in TOKEN_LOSSES, f"generation.loss {preview(g.loss)} is not a token loss; use one of {', '.join(TOKEN_LOSSES)}")
    need(g.ce_weight >= 0 and g.kd_weight >= 0, "generation.ce_weight and generation.kd_weight must be non-negative")
    need(g.ce_weight + g.kd_weight > 0, "generation.ce_weight and generation.kd_weight are both 0; set one above 0")
    need(g.temperature > 0, f"generation.temperature must be positive, got {g.temperature}")
    need(0 <= g.jsd_beta <= 1, f"generation.jsd_beta must be in [0, 1], got {g.jsd_beta}")
    need(0 <= g.skew_alpha < 1, f"generation.skew_alpha must be in [0, 1) (1 makes the loss 0), got {g.skew_alpha}")
    need(0 <= g.on_policy_fraction <= 1, f"generation.on_policy_fraction must be in [0, 1], got {g.on_policy_fraction}")
    need(g.on_policy_fraction == 0 or g.kd_weight > 0,
         "generation.on_policy_fraction needs generation.kd_weight > 0 (student samples have no reference to fit)")
    need(g.topk >= 0, f"generation.topk must be 0 (full distribution) or positive, got {g.topk}")
    need(g.topk == 0 or g.loss == "forward_kl",
         f"generation.topk works with generation.loss 'forward_kl' only (it is {g.loss!r}); set topk: 0 or loss: forward_kl")
    need(g.chunk_size >= 0, f"generation.chunk_size must be 0 (off) or positive, got {g.chunk_size}")
    need(g.num_beams >= 1, f"generation.num_beams must be at least 1, got {g.num_beams}")
    need(g.sequence_kd != "off" or not g.with_references,
         "generation.with_references only applies with sequence_kd; set sequence_kd: greedy, beam or sample")
    need(g.max_new_tokens >= 1, f"generation.max_new_tokens must be at least 1, got {g.max_new_tokens}")
    need(g.max_length >= 8 and g.max_target_length >= 4,
         "generation.max_length must be at least 8 and generation.max_target_length at least 4")
    need(g.on_policy_prompt_tokens >= 1, "generation.on_policy_prompt_tokens must be at least 1")
    need(g.sample_temperature > 0, f"generation.sample_temperature must be positive, got {g.sample_temperature}")
    need(g.max_eval_examples >= 1 and g.speed_prompts >= 1,
         "generation.max_eval_examples and generation.speed_prompts must be at least 1")
    need(g.max_train_examples is None or g.max_train_examples >= 2,
         "generation.max_train_examples must be at least 2 or empty")
    for frac in ("validation_fraction", "test_fraction"):
        need(0 <= getattr(g, frac) < 0.5, f"generation.{frac} must be in [0, 0.5), got {getattr(g, frac)}")
    for name in ("student_layers", "student_encoder_layers"):
        v = getattr(g, name)
        need(v is None or (len(v) >= 1 and min(v) >= 0 and len(set(v)) == len(v)),
             f"generation.{name} must list distinct teacher layers (0 or more), e.g. [2, 5], or be empty; got {preview(v)}")
    need(cfg.student.init != "pretrained" or cfg.student.path is not None,
         "student.init is 'pretrained' but student.path is empty")
    if cfg.teacher.path == "train":
        need(task == "seq2seq", "teacher.path 'train' (a teacher trained here from scratch) is for task 'seq2seq'; "
             "for causal_lm use 'builtin' (SmolLM2-135M-Instruct) or a model folder")
        need(g.teacher_d_model % g.teacher_heads == 0,
             f"generation.teacher_d_model {g.teacher_d_model} must be divisible by generation.teacher_heads {g.teacher_heads}")
        need(min(g.teacher_layers, g.teacher_ffn, g.vocab_size) >= 1 and g.vocab_size >= 100,
             "generation.teacher_layers, teacher_ffn must be at least 1 and vocab_size at least 100")
    if cfg.teacher.path == "builtin":
        need(task == "causal_lm", "teacher.path 'builtin' is SmolLM2-135M-Instruct, a causal LM; for seq2seq set "
             "teacher.path to 'train' (trained here on the data) or an encoder-decoder folder")
    need(not cfg.teacher.extra_paths, "teacher.extra_paths (multi-teacher) is for classification only; remove it")


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Defaults, then the YAML file at `path`, then `overrides` ({"train.epochs": 2, ...})."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise TextDistillError(f"config file {str(p)!r} does not exist; check the path")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            first = str(e).strip().splitlines()[0]
            raise TextDistillError(f"config file {str(p)!r} is not valid YAML ({first}); fix the syntax") from None
        if not isinstance(raw, dict):
            raise TextDistillError(f"config file {str(p)!r} must hold a mapping of sections, not {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise TextDistillError(f"cannot set {preview(dotted)}: {preview(part)} is not a section")
            node = child
        node[leaf] = value
    cfg = from_dict(RunConfig, raw)
    _check_ranges(cfg)
    return cfg


def save_config(cfg: RunConfig, path: str | Path) -> None:
    values = to_dict(cfg)
    if cfg.task not in GENERATION_TASKS:
        del values["generation"]  # unused by classification, whose run folders stay as they were
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")


def iter_fields(cls: type = RunConfig, prefix: str = "") -> typing.Iterator[tuple[str, Any, dataclasses.Field]]:
    """Yield (dotted name, annotation, field) for every leaf field: the CLI makes a flag of each."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp, f
