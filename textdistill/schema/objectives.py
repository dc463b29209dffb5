"""The objective's sections: `loss` (every task), `generation` (what only generation has), `online` and `quantisation` (methods that train more than the student, or train it for int8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textdistill.schema.fields import CLASSIFICATION, GENERATION_TASKS, doc


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
    class_balance: bool | Literal["uniform"] = doc(
        False,
        "Weight each example's soft term by its class (the teacher's top class) so that every class carries a "
        "set share of the soft term: true, the share the gold labels give it (variants and unlabelled text the "
        "teacher pulls toward the common classes would otherwise crowd out a rare one); 'uniform', an equal "
        "share, which lifts a rare class the teacher itself is unsure of (on balanced data the two are the same).",
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
