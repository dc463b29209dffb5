"""The `data` section: where the examples come from and how they are tokenised."""

from __future__ import annotations

from dataclasses import dataclass

from textdistill.schema.fields import CLASSIFICATION, GENERATION_TASKS, doc


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
    generated_texts: int = doc(
        0,
        "Texts a causal LM writes in the style of the training text, added to the unlabelled text (teacher soft "
        "targets only; see textdistill/data/generated.py): each prompt is 4 training texts of one class, "
        "classes taken in turn. Like variants they add data, not steps. Written once, cached, shared by later "
        "runs; 0 turns it off.",
        tasks=CLASSIFICATION,
    )
    generator: str = doc(
        "builtin", "The causal LM that writes data.generated_texts: 'builtin' (SmolLM2-135M-Instruct) or a model folder.",
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
