"""The run configuration's schema: one set of frozen dataclasses, by concept, for every task.

Every field carries its documentation in `metadata["doc"]`, the tasks that use it in `metadata["tasks"]`,
what to set instead under the other tasks in `metadata["instead"]` and defaults that differ by task in
`metadata["per_task"]`; the CLI builds its `--section.field` flags and their `--help` text from them, so
the file, the flags and the help can never drift apart. Reading and writing YAML is `config.py`.

Sections are concepts, not tasks: one `data`, `teacher`, `student`, `loss`, `train` and `report` section
serves classification, causal LMs and encoder-decoders; `generation` holds what only generation has
(decoding, sequence-level and on-policy KD, the top-k teacher). A field that its run's task does not use
must stay at its default: set, it is an error naming the field to use instead (`config_checks.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TASK_NAMES = ("classification", "causal_lm", "seq2seq")
GENERATION_TASKS = ("causal_lm", "seq2seq")
CLASSIFICATION = ("classification",)
# How teacher-labelled variants can be made (`data.augment_kinds`; textdistill/data/augment.py).
AUGMENT_KINDS = ("tokens", "neighbours", "span", "mix")


def doc(default: Any, text: str, *, tasks: tuple[str, ...] = TASK_NAMES, instead: str | None = None,
        per_task: dict[str, Any] | None = None) -> Any:
    """A dataclass field with its documentation, the tasks that use it, what to set instead under the other
    tasks, and defaults that differ by task (`per_task`)."""
    meta = {"doc": text, "tasks": tasks, "instead": instead, "per_task": per_task or {}}
    return field(default=default, metadata=meta)


def section(factory: Any, text: str, tasks: tuple[str, ...] = TASK_NAMES) -> Any:
    return field(default_factory=factory, metadata={"doc": text, "tasks": tasks, "instead": None, "per_task": {}})


@dataclass(frozen=True)
class DataConfig:
    dataset: str | None = doc(
        None,
        "Built-in data instead of files: for classification 'rotten_tomatoes' (movie-review sentiment, with "
        "unlabelled plot synopses) or 'bbc_news' (2,225 BBC articles in 5 topics); for causal_lm 'bible_en' "
        "(English Bible verses); for seq2seq 'bible_en_es' (English-Spanish verse pairs). Leave empty to read "
        "`train` (and the other files).",
    )
    train: str | None = doc(
        None,
        "Training file. Classification: labelled .csv, .tsv, .jsonl or .parquet. Generation: prompt/response "
        "JSONL ({\"prompt\", \"response\"}), parallel JSONL ({\"source\", \"target\"}), parallel TSV "
        "(source<TAB>target) or plain text (.txt, one example per line).",
    )
    validation: str | None = doc(
        None, "Validation file (same format). If empty, a `validation_fraction` of train is held out by seed."
    )
    test: str | None = doc(None, "Test file (same format). If empty, a `test_fraction` of train is held out by seed.")
    unlabeled: str | None = doc(
        None,
        "File of extra unlabelled text (same text column(s)); used with the teacher's soft targets only.",
        tasks=CLASSIFICATION,
    )
    use_builtin_unlabeled: bool = doc(
        False, "With a built-in dataset, also train on its unlabelled text (teacher soft targets only).",
        tasks=CLASSIFICATION,
    )
    text_column: str = doc("text", "Column holding the text (the first sentence for pairs).", tasks=CLASSIFICATION,
                           instead="generation files name their fields (prompt/response, source/target or text)")
    text_pair_column: str | None = doc(None, "Column holding the second sentence, for sentence-pair tasks.",
                                       tasks=CLASSIFICATION, instead="use a parallel file for source/target pairs")
    label_column: str = doc("label", "Column holding the label (names or integers).", tasks=CLASSIFICATION,
                            instead="generation data has no labels: give responses or targets in data.train")
    validation_fraction: float = doc(
        0.1, "Share of train held out for validation when no file is given (0.05 for generation).",
        per_task={"causal_lm": 0.05, "seq2seq": 0.05},
    )
    test_fraction: float = doc(
        0.1, "Share of train held out for test when no file is given (0.05 for generation).",
        per_task={"causal_lm": 0.05, "seq2seq": 0.05},
    )
    split_seed: int = doc(0, "Seed of the deterministic train/validation/test split.")
    max_length: int = doc(
        64,
        "Most tokens of an example; longer texts are truncated (with a warning). Classification: the text (64 "
        "by default); causal_lm: prompt + response; seq2seq: the source (128 by default for both).",
        per_task={"causal_lm": 128, "seq2seq": 128},
    )
    max_target_length: int = doc(128, "Most tokens of a seq2seq target.", tasks=("seq2seq",),
                                 instead="data.max_length covers prompt and response")
    source_prefix: str = doc(
        "", "Text put before every source/prompt (e.g. 'Translate to Spanish: ' for a causal LM on parallel data).",
        tasks=GENERATION_TASKS,
    )
    chat_template: bool = doc(
        True, "Wrap prompt/response pairs in the tokenizer's chat template when it has one.", tasks=("causal_lm",),
    )
    augment_copies: int = doc(
        1,
        "Teacher-labelled variants of each training text added to the student's data (tokens deleted, "
        "masked or replaced; see textdistill/data/augment.py); 0 turns augmentation off. Variants add "
        "data, not steps: the student trains for as many optimizer steps as without them (the baseline's "
        "budget), evaluated on the same schedule.",
        tasks=CLASSIFICATION, instead="generation.sequence_kd adds teacher-written targets",
    )
    augment_share: float = doc(0.3, "Share of a variant's tokens that are changed (deleted, masked or replaced).",
                               tasks=CLASSIFICATION)
    augment_kinds: tuple[str, ...] = doc(
        ("tokens",),
        "How variants are made, one kind drawn per variant: 'tokens' (scattered tokens deleted, masked or "
        "replaced), 'neighbours' (scattered tokens replaced by their nearest neighbours in the teacher's "
        "input-embedding space), 'span' (one contiguous span of augment_share of the tokens deleted), 'mix' (the start of "
        "the text joined to the end of another training text; single-text tasks only).",
        tasks=CLASSIFICATION,
    )
    max_train_examples: int | None = doc(
        None, "Use only the first N training examples after the split (quick trials)."
    )
    max_eval_examples: int = doc(
        200, "Validation and test examples used at most (perplexity, BLEU/chrF, ROUGE-L).", tasks=GENERATION_TASKS,
    )


@dataclass(frozen=True)
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
    min_steps: int = doc(0, "Optimizer steps trained at least before early stopping may end the training.")
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
        "costs a large share of a small student's step (docs/measurements.md).",
    )
    threads: int | None = doc(None, "CPU threads for torch; empty keeps torch's default.")
    progress: bool = doc(True, "Show a progress bar with loss, rate and ETA.")
    report_to: tuple[str, ...] = doc(
        (),
        "Experiment trackers that get every metrics.jsonl line, the run config and the final summary: any "
        "tracker accelerate knows, e.g. [tensorboard, mlflow] (also wandb, comet_ml, aim, clearml, dvclive, "
        "swanlab, trackio). Local by default, in <output_dir>/tracking; TensorBoard and MLflow install with "
        "pip install 'textdistill[tracking]'. Main process only. Empty: no tracker.",
    )
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
        "all-MiniLM-L6-v2), 'mpnet' (all-mpnet-base-v2 from five packaged parts, 12 layers, a GPU-sized "
        "teacher; see docs/guide/students.md for its install command) or a local Hugging Face folder.",
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
        "(cached like any other) and the teacher with the best validation accuracy is kept; the report lists "
        "them all. Empty uses teacher.finetune.learning_rate.",
        tasks=CLASSIFICATION,
    )
    architecture: TeacherArchitecture = section(
        TeacherArchitecture, "Sizes of the seq2seq teacher trained here (teacher.path 'train').", tasks=("seq2seq",)
    )
    batch_size: int = doc(128, "Batch size when a model scores data without gradients (teacher signal, "
                               "evaluation); batches of long texts are cut to 4,096 padded tokens, which runs "
                               "faster on a CPU.")


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


@dataclass(frozen=True)
class LossConfig:
    alpha: float = doc(0.5, "Weight of the cross-entropy on gold labels (or reference tokens).")
    beta: float = doc(0.5, "Weight of the soft term against the teacher.")
    temperature: float = doc(
        2.0,
        "Softmax temperature of the soft term, which is scaled by T^2 (not for 'mse'); 2 by default for "
        "classification, 1 for generation.",
        per_task={"causal_lm": 1.0, "seq2seq": 1.0},
    )
    soft: str = doc(
        "forward_kl",
        "Soft term against the teacher, a name of textdistill.losses.LOSSES (one registry for every task, per "
        "example for classification, per token for generation): 'forward_kl' = KL(teacher || student) (Hinton), "
        "'reverse_kl' = KL(student || teacher), 'jsd' (`jsd_beta`), 'skew_kl' and 'skew_reverse_kl' "
        "(`skew_alpha`), 'total_variation', 'mse' (MSE between raw logits, no temperature), 'dkd' (decoupled "
        "KD: forward KL split into its target-class and non-target parts, weighted `dkd_alpha` and `dkd_beta`), "
        "'adaptive_kl' (forward KL weighted per example by the teacher-student gap, `adaptive_beta`, "
        "`adaptive_gamma`). See docs/guide/methods.md.",
    )
    jsd_beta: float = doc(0.5, "beta of soft 'jsd': 0 is forward KL, 1 is reverse KL.")
    skew_alpha: float = doc(0.1, "alpha of the skew losses: 0 is the plain KL, 1 gives 0.")
    dkd_alpha: float = doc(
        1.0, "Weight of soft 'dkd''s target-class term (TCKD: KL between the binary target / rest distributions).")
    dkd_beta: float = doc(
        8.0,
        "Weight of soft 'dkd''s non-target term (NCKD: KL over the other classes, renormalised); classical KD "
        "is dkd_alpha 1 with beta = 1 - p_target. 8 is the paper's CIFAR-100 setting (Zhao et al. 2022). The "
        "target class is the label, or the teacher's top class where there is none.",
    )
    adaptive_beta: float = doc(
        1.5, "beta of soft 'adaptive_kl': how much the teacher's entropy adds to an example's weight "
             "w = (1 - exp(-(KL + beta * H(teacher))))^gamma.")
    adaptive_gamma: float = doc(
        1.0, "gamma of soft 'adaptive_kl': the focus; 0 is plain forward KL, larger values fade out the "
             "examples the student already matches (Tang et al. 2019).")
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
        tasks=CLASSIFICATION,
    )
    label_normalization: Literal["examples", "labelled"] = doc(
        "examples",
        "What the cross-entropy on gold labels is averaged over: 'examples' (every example of the step, "
        "unlabelled text and teacher-labelled variants included, so a larger transfer set dilutes the labels) "
        "or 'labelled' (the labelled examples only: the labels keep their weight whatever the transfer set's "
        "size). The soft term is averaged over every example either way.",
        tasks=CLASSIFICATION,
    )
    class_balance: bool = doc(
        False,
        "Weight each example's soft term so that every class (the teacher's top class) carries the share the "
        "gold labels give it: variants and unlabelled text the teacher pulls toward the common classes would "
        "otherwise crowd out a rare one.",
        tasks=CLASSIFICATION,
    )
    hidden_loss: Literal["none", "mse", "cosine", "vid"] = doc(
        "none",
        "Intermediate-layer matching of hidden states: 'mse' (TinyBERT), 'cosine' (1 - cos, DistilBERT), "
        "'vid' (variational information distillation: the Gaussian negative log-likelihood of the teacher's "
        "states given the student's, through a learned regressor and per-dimension variance kept outside the "
        "student; Ahn et al. 2019), or 'none'. Runs the teacher live at every step (its hidden states are not "
        "cached).",
        tasks=CLASSIFICATION,
    )
    hidden_weight: float = doc(1.0, "Weight of the hidden-state term (summed over the matched layers).",
                               tasks=CLASSIFICATION)
    attention_weight: float = doc(
        0.0,
        "Weight of attention-distribution matching KL(A_teacher || A_student) on the matched layers, "
        "averaged over heads (TinyBERT, MiniLM); needs the same number of heads. 0 turns it off.",
        tasks=CLASSIFICATION,
    )
    embedding_weight: float = doc(
        0.0, "Weight of matching the embedding-layer output (with `hidden_loss`, or MSE if that is 'none'); 0 is off.",
        tasks=CLASSIFICATION,
    )
    layer_map: Literal["uniform", "last_k", "skip"] = doc(
        "uniform",
        "Which teacher layer each student layer matches when `layer_pairs` is empty: 'uniform' (student "
        "layer i of n to teacher layer round((i+1)*N/n)-1, ending with the last; equals the default "
        "copied layers), 'skip' (every N//n-th teacher layer, Patient-KD skip), 'last_k' (the last `last_k` "
        "student layers to the last `last_k` teacher layers, Patient-KD last).",
        tasks=CLASSIFICATION,
    )
    layer_pairs: tuple[tuple[int, ...], ...] | None = doc(
        None, "Explicit layer map: [[student layer, teacher layer], ...], 0-based; overrides `layer_map`.",
        tasks=CLASSIFICATION,
    )
    last_k: int | None = doc(None, "Layers matched by `layer_map: last_k`; empty means all student layers.",
                             tasks=CLASSIFICATION)
    contrastive_weight: float = doc(
        0.0,
        "Weight of contrastive distillation (CRD, Tian et al. 2020; CoDIR, Sun et al. 2020): InfoNCE making the "
        "student's mean-pooled last hidden state closer to the teacher's of the same example than of other "
        "examples. The teacher's pooled states are scored once and served through the cache. 0 turns it off.",
        tasks=CLASSIFICATION,
    )
    contrastive_temperature: float = doc(0.1, "Temperature tau of the contrastive term's softmax over cosines.",
                                         tasks=CLASSIFICATION)
    contrastive_dim: int = doc(128, "Width of the space both pooled states are projected into (heads outside "
                                    "the student).", tasks=CLASSIFICATION)
    contrastive_bank: int = doc(
        0,
        "Teacher representations kept as extra negatives beyond the batch (a first-in first-out memory bank, "
        "filled from the cached teacher representations before the first step); 0 uses in-batch negatives only.",
        tasks=CLASSIFICATION,
    )


@dataclass(frozen=True)
class GenerationConfig:
    """What only the generation tasks (`task: causal_lm | seq2seq`) have: decoding, sequence-level and
    on-policy KD, the top-k teacher."""

    sequence_kd: Literal["off", "greedy", "beam", "sample"] = doc(
        "off",
        "Sequence-level KD (Kim & Rush 2016): the teacher writes the training targets once (cached on disk) by "
        "'greedy', 'beam' or 'sample' decoding; 'off' trains on the references.",
        tasks=GENERATION_TASKS,
    )
    num_beams: int = doc(4, "Beams for sequence_kd 'beam'.", tasks=GENERATION_TASKS)
    with_references: bool = doc(False, "With sequence_kd, train on the references too (twice the examples).",
                                tasks=GENERATION_TASKS)
    on_policy_fraction: float = doc(
        0.0,
        "Share of optimizer steps whose batches are the student's own samples (no gradient through sampling), "
        "scored token by token by the teacher (GKD, Agarwal et al. 2024). 0 turns it off.",
        tasks=GENERATION_TASKS,
    )
    on_policy_prompt_tokens: int = doc(
        8, "Prompt length for on-policy samples from data without a prompt (plain text): its first N tokens.",
        tasks=GENERATION_TASKS,
    )
    sample_temperature: float = doc(1.0, "Sampling temperature of on-policy samples and sequence_kd 'sample'.",
                                    tasks=GENERATION_TASKS)
    topk: int = doc(
        0,
        "Top-k teacher mode: the teacher's k largest log-probs and leftover mass per token, cached on disk, "
        "instead of its full distribution (loss.soft 'forward_kl' only); 0 uses the full distribution, scored live.",
        tasks=GENERATION_TASKS,
    )
    chunk_size: int = doc(0, "Compute the token loss this many positions at a time (memory-bounded); 0 = all at once.",
                          tasks=GENERATION_TASKS)
    max_new_tokens: int = doc(64, "Most tokens generated per example (sequence KD, on-policy, BLEU/chrF, speed).",
                              tasks=GENERATION_TASKS)


@dataclass(frozen=True)
class OnlineConfig:
    """Online distillation: models trained together in the one loop instead of a frozen teacher's cached
    outputs (docs/guide/methods.md)."""

    mode: Literal["off", "co_training", "mutual"] = doc(
        "off",
        "'off': offline distillation from the frozen teacher (its outputs cached). 'co_training': the teacher "
        "is fine-tuned on the labels in the same loop while the student learns from its current outputs (with "
        "teacher.path 'builtin' the pretrained `teacher.base`, not fine-tuned first). 'mutual': deep mutual "
        "learning (Zhang et al. 2018): the peers (the student, `students - 1` more, and the teacher when "
        "`teacher_peer`) each learn from the labels and from the others' softened outputs. A changing teacher "
        "cannot be cached: it runs forward and backward at every step.",
    )
    students: int = doc(
        1,
        "Students trained in 'mutual' (the first is the run's student, saved and exported; the others are "
        "built the same way with seeds train.seed + 1, 2, ... and discarded).",
    )
    teacher_peer: bool = doc(
        True, "In 'mutual', the teacher is a peer too, learning from the labels and the students' outputs; "
              "false leaves it out (students only, at least 2).")
    peer_target: Literal["each", "ensemble"] = doc(
        "each",
        "In 'mutual', what each peer learns from: 'each' (the mean of loss.soft against every other peer, DML) "
        "or 'ensemble' (against the peers' averaged logits, ONE / OKDDip style).",
    )
    teacher_learning_rate: float = doc(
        5e-5, "Peak learning rate of the teacher when it is trained in the loop (co_training, or mutual with "
              "teacher_peer); the students use train.learning_rate.")
    teacher_share: float = doc(
        1.0,
        "In 'co_training', the share of the steps in which the teacher learns; after it the teacher is frozen "
        "(eval mode, forward only: about a third of a learning step's cost). 0.25 of a 4-epoch student is one "
        "epoch of teacher training.",
    )


@dataclass(frozen=True)
class QuantisationConfig:
    aware: bool = doc(
        False,
        "Quantisation-aware distillation: the student trains against the teacher's soft targets with its "
        "weights and activations fake-quantised exactly as `export` quantises them to int8 for ONNX Runtime "
        "(PyTorch's FakeQuantize: int8 symmetric weights, uint8 activations ranged per batch, uint8 embedding "
        "tables), so the int8 model loses less than a float-trained student. Validation (the best checkpoint) "
        "is judged on the fake-quantised student.",
        tasks=CLASSIFICATION,
    )
    start: float = doc(
        0.5, "Share of the training steps trained in float32 before fake quantisation turns on (0: from the start).",
        tasks=CLASSIFICATION,
    )


@dataclass(frozen=True)
class ReportConfig:
    baseline: bool = doc(True, "Also train the same student without a teacher (labels only) for comparison.")
    latency_examples: int = doc(
        200,
        "Test examples timed one at a time: batch-1 latency of a forward pass (classification), or of greedy "
        "decoding (generation, 20 by default).",
        per_task={"causal_lm": 20, "seq2seq": 20},
    )
    throughput_batches: int = doc(10, "Batches of 32 timed for throughput.", tasks=CLASSIFICATION,
                                  instead="report.latency_examples times greedy decoding")


# Named student sizes for sweep.students: the share of the teacher's layers kept (at least one).
STUDENT_SIZES = {"quarter": 0.25, "third": 1 / 3, "half": 0.5}


@dataclass(frozen=True)
class SweepConfig:
    temperatures: tuple[float, ...] = doc(
        (1.0, 2.0, 4.0), "Values of loss.temperature tried by `distill --sweep`; empty keeps loss.temperature.",
        tasks=CLASSIFICATION,
    )
    alphas: tuple[float, ...] = doc(
        (0.2, 0.5, 0.8),
        "Values of loss.alpha tried by `distill --sweep`, each with loss.beta = 1 - alpha; empty keeps both.",
        tasks=CLASSIFICATION,
    )
    students: tuple[int | str, ...] = doc(
        (),
        "Student sizes tried by `distill --sweep`: layer counts (2) or names of a share of the teacher's "
        "layers ('quarter', 'third', 'half'). Sets student.layers (evenly spread, ending with the last "
        "teacher layer) or student.num_layers for 'shrink'. Empty keeps the configured student.",
        tasks=CLASSIFICATION,
    )
    softs: tuple[str, ...] = doc(
        (),
        "Values of loss.soft tried by `distill --sweep` (e.g. forward_kl, dkd, adaptive_kl); empty keeps loss.soft.",
        tasks=CLASSIFICATION,
    )
    dkd_betas: tuple[float, ...] = doc(
        (), "Values of loss.dkd_beta tried with soft 'dkd'; empty keeps loss.dkd_beta.", tasks=CLASSIFICATION,
    )
    adaptive_gammas: tuple[float, ...] = doc(
        (), "Values of loss.adaptive_gamma tried with soft 'adaptive_kl'; empty keeps loss.adaptive_gamma.",
        tasks=CLASSIFICATION,
    )
    time_budget_s: float = doc(
        1800.0,
        "Wall-clock seconds for the sweep's trials. Trials are shortened (fewer steps, the same for all) "
        "to fit; those that still do not fit are reported as skipped. Fine-tuning and scoring with the "
        "teacher are one-off costs, cached for the final run, and not counted.",
        tasks=CLASSIFICATION,
    )
    min_trial_steps: int = doc(
        20, "Fewest optimizer steps a trial may be shortened to; below that, trials are skipped instead.",
        tasks=CLASSIFICATION,
    )


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = doc("runs/default", "Run folder: config, metrics, checkpoints, models and report.")
    task: Literal["classification", "causal_lm", "seq2seq"] = doc(
        "classification",
        "Task family: 'classification', 'causal_lm' (decoder-only language model) or 'seq2seq' (encoder-decoder); "
        "see docs/guide/generation.md for the generation tasks.",
    )
    data: DataConfig = section(DataConfig, "Where the examples come from and how they are tokenised.")
    teacher: TeacherConfig = section(TeacherConfig, "The teacher model.")
    student: StudentConfig = section(StudentConfig, "How the student is built.")
    loss: LossConfig = section(LossConfig, "The distillation objective.")
    train: TrainConfig = section(TrainConfig, "Student training settings.")
    report: ReportConfig = section(ReportConfig, "What the final report measures.")
    sweep: SweepConfig = section(SweepConfig, "The grid tried by `distill --sweep` on validation.", CLASSIFICATION)
    online: OnlineConfig = section(OnlineConfig, "Online distillation: co-training and deep mutual learning.")
    quantisation: QuantisationConfig = section(
        QuantisationConfig, "Quantisation-aware distillation for the int8 ONNX export.", CLASSIFICATION)
    generation: GenerationConfig = section(
        GenerationConfig, "Decoding, sequence-level and on-policy KD, and the top-k teacher of the generation tasks.",
        GENERATION_TASKS,
    )
    trust_remote_code: bool = doc(
        False,
        "Let model folders run their own Python code (an `auto_map` in config.json). Off: such folders are "
        "refused. Turn on only for folders you trust.",
    )
