"""Checks of a run configuration beyond its types: ranges, fields the task does not use, cross-field rules.

Each failure is one `TextDistillError` line naming the field and the fix. `check_config` runs on every
configuration that is loaded or derived (`config.load_config`, `config.replaced`).
"""

from __future__ import annotations

from textdistill.config import (GENERATION_TASKS, STUDENT_SIZES, RunConfig, TrainConfig, defaults, field_tasks, get,
                                iter_fields)
from textdistill.errors import TextDistillError, preview
from textdistill.schema import AUGMENT_KINDS

# Built-in datasets of each task (classification: textdistill.data.builtin; generation: textdistill.data.bible).
DATASETS = {"classification": ("rotten_tomatoes", "bbc_news"), "causal_lm": ("bible_en",), "seq2seq": ("bible_en_es",)}


def need(ok: bool, msg: str) -> None:
    if not ok:
        raise TextDistillError(msg)


def check_config(cfg: RunConfig) -> None:
    check_task_fields(cfg)
    for name, t in (("train", cfg.train), ("teacher.finetune", cfg.teacher.finetune)):
        _check_train(name, t)
    _check_tracking(cfg)
    _check_data(cfg)
    _check_teacher(cfg)
    _check_student(cfg)
    _check_loss(cfg)
    _check_online(cfg)
    need(0 <= cfg.quantisation.start < 1, f"quantisation.start must be in [0, 1), got {cfg.quantisation.start}")
    if cfg.task in GENERATION_TASKS:
        _check_generation(cfg)
    else:
        _check_sweep(cfg)
    need(cfg.report.latency_examples >= 1, "report.latency_examples must be at least 1")
    need(cfg.report.throughput_batches >= 1, "report.throughput_batches must be at least 1")


def check_task_fields(cfg: RunConfig) -> None:
    """A field that the run's task does not use must keep its default: set, it would be silently ignored."""
    base = defaults(cfg.task)
    for dotted, _, f in iter_fields():
        tasks = field_tasks(dotted)
        if cfg.task in tasks or get(cfg, dotted) == get(base, dotted):
            continue
        fix = f.metadata["instead"] or "remove it"
        users = " and ".join(repr(t) for t in tasks)
        raise TextDistillError(f"{dotted} is not used by task {cfg.task!r} (only by {users}); {fix}")


def _check_train(name: str, t: TrainConfig) -> None:
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
    need(t.min_steps >= 0, f"{name}.min_steps must be 0 or positive, got {t.min_steps}")


def _check_tracking(cfg: RunConfig) -> None:
    from textdistill.training.tracking import known_trackers

    names = cfg.train.report_to
    known = known_trackers()
    for name in names:
        need(name in known, f"train.report_to: {preview(name)} is not a tracker accelerate knows; use any of "
             f"{', '.join(known)}")
    need(len(set(names)) == len(names), f"train.report_to names a tracker twice: {preview(names)}")
    need(not cfg.teacher.finetune.report_to, "teacher.finetune.report_to is not used: experiment tracking follows "
         "the distill run (student and baseline); set train.report_to instead")


def _check_data(cfg: RunConfig) -> None:
    d, task = cfg.data, cfg.task
    builtin = DATASETS[task]
    need(d.dataset is not None or d.train is not None,
         f"no data: set data.dataset (for task {task!r}: {', '.join(builtin)}) or data.train to a data file")
    if d.dataset is not None:
        need(d.dataset in builtin, f"data.dataset {preview(d.dataset)} is not a built-in dataset of task {task!r}; use one "
             f"of {', '.join(builtin)} or leave it empty and set data.train")
        need(d.train is None, "data.dataset and data.train are both set; keep one of them")
    need(d.max_length >= 8, f"data.max_length must be at least 8 tokens, got {d.max_length}")
    need(d.max_target_length >= 4, f"data.max_target_length must be at least 4 tokens, got {d.max_target_length}")
    need(d.max_train_examples is None or d.max_train_examples >= 2,
         f"data.max_train_examples must be at least 2 or empty, got {d.max_train_examples}")
    need(d.max_eval_examples >= 1, f"data.max_eval_examples must be at least 1, got {d.max_eval_examples}")
    most = 0.5 if task in GENERATION_TASKS else 1.0
    for frac in ("validation_fraction", "test_fraction"):
        v = getattr(d, frac)
        need(0 <= v < most, f"data.{frac} must be in [0, {most:g}), got {v}")
    need(d.validation_fraction + d.test_fraction < 0.9, "data.validation_fraction + data.test_fraction must be < 0.9")
    need(0 <= d.augment_copies <= 64, f"data.augment_copies must be in [0, 64], got {d.augment_copies}")
    need(0 <= d.generated_texts <= 1_000_000, f"data.generated_texts must be in [0, 1000000], got {d.generated_texts}")
    need(d.generated_texts == 0 or d.text_pair_column is None,
         "data.generated_texts writes single texts; for a sentence-pair task set it to 0")
    need(0 < d.augment_share < 1, f"data.augment_share must be in (0, 1), got {d.augment_share}")
    need(bool(d.augment_kinds) and set(d.augment_kinds) <= set(AUGMENT_KINDS),
         f"data.augment_kinds must be a non-empty list of {', '.join(map(repr, AUGMENT_KINDS))}; "
         f"got {preview(d.augment_kinds)}")
    need("mix" not in d.augment_kinds or d.text_pair_column is None,
         "data.augment_kinds 'mix' joins two single texts; for a sentence-pair task use 'tokens' or 'span'")


def _check_teacher(cfg: RunConfig) -> None:
    t, task = cfg.teacher, cfg.task
    need(t.batch_size >= 1, f"teacher.batch_size must be at least 1, got {t.batch_size}")
    need(all(v > 0 for v in t.learning_rates), f"teacher.learning_rates must all be positive, got {preview(t.learning_rates)}")
    need(not t.learning_rates or t.path == "builtin",
         "teacher.learning_rates searches the built-in teacher's fine-tuning; set teacher.path to 'builtin' or remove it")
    need(not t.ensemble_trials or len(t.learning_rates) >= 2,
         "teacher.ensemble_trials combines the trials of teacher.learning_rates; list two or more rates there or "
         "set teacher.ensemble_trials: false")
    need(not (t.ensemble_trials and t.combine == "weighted"),
         "teacher.combine 'weighted' names each teacher's weight, but with teacher.ensemble_trials the trials' order "
         "is known only after the search; use combine 'mean' or 'confidence'")
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
    if t.path == "train":
        need(task == "seq2seq", f"teacher.path 'train' (a teacher trained here from scratch) is for task 'seq2seq'; "
             f"for {task} use 'builtin' or a model folder")
        a = t.architecture
        need(a.hidden_size % a.num_heads == 0, f"teacher.architecture.hidden_size {a.hidden_size} must be divisible "
             f"by teacher.architecture.num_heads {a.num_heads}")
        need(min(a.num_layers, a.intermediate_size, a.num_heads) >= 1 and a.vocab_size >= 100,
             "teacher.architecture.num_layers, num_heads and intermediate_size must be at least 1 and vocab_size "
             "at least 100")
    if t.path == "builtin":
        need(task != "seq2seq", "teacher.path 'builtin' is SmolLM2-135M-Instruct, a causal LM; for seq2seq set "
             "teacher.path to 'train' (trained here on the data) or an encoder-decoder folder")


def _check_student(cfg: RunConfig) -> None:
    s = cfg.student
    if s.init == "pretrained":
        need(s.path is not None, "student.init is 'pretrained' but student.path is empty; give the model folder")
    for name in ("layers", "encoder_layers"):
        v = getattr(s, name)
        if v is None:
            continue
        need(len(v) >= 1,
             f"student.{name} is an empty list; list the teacher layers to copy, e.g. [2, 5], or leave it empty (null)")
        need(len(set(v)) == len(v), f"student.{name} has repeats: {preview(v)}")
        need(min(v) >= 0, f"student.{name} lists a negative layer: {preview(v)}")
    need(0 < s.ffn_keep <= 1, f"student.ffn_keep must be in (0, 1], got {s.ffn_keep}")
    need(s.num_layers >= 1, f"student.num_layers must be at least 1, got {s.num_layers}")
    for name in ("hidden_size", "num_heads", "intermediate_size"):
        v = getattr(s, name)
        need(v is None or v >= 1, f"student.{name} must be at least 1 or empty, got {v}")
    if s.hidden_size is not None and s.num_heads is not None:
        need(s.hidden_size % s.num_heads == 0,
             f"student.hidden_size {s.hidden_size} is not divisible by student.num_heads {s.num_heads}; "
             "pick sizes where it is")
    need(not s.fine_tune_source or (s.init == "teacher_layers" and s.source != "teacher"),
         "student.fine_tune_source fine-tunes student.source before the student is made of it; set student.source to "
         "an encoder other than the teacher (e.g. 'minilm') with student.init 'teacher_layers', or remove it")
    need(s.source == "teacher" or s.init == "teacher_layers",
         f"student.source {preview(s.source)} gives the layers of a 'teacher_layers' student, but student.init is "
         f"{s.init!r}; set student.init to 'teacher_layers' or remove student.source")
    need(s.vocab == "teacher" or s.init != "pretrained",
         "student.vocab 'task' prunes the teacher's vocabulary, but student.init 'pretrained' brings its own "
         "tokenizer; set student.vocab to 'teacher' or student.init to 'teacher_layers' or 'shrink'")
    need(0 <= s.vocab_common <= 1_000_000, f"student.vocab_common must be between 0 and 1,000,000, got {s.vocab_common}")
    need(not s.vocab_common or s.vocab == "task",
         "student.vocab_common adds common tokens to a pruned vocabulary, but student.vocab is 'teacher' (all "
         "tokens kept); set student.vocab to 'task' or remove student.vocab_common")
    if cfg.task in GENERATION_TASKS and s.init == "teacher_layers":
        need(s.hidden_size is None and s.num_heads is None,
             f"student.hidden_size and student.num_heads narrow a classification student made of teacher layers; "
             f"a {cfg.task} student keeps the teacher's width: remove them, or set student.init 'shrink'")


def _check_loss(cfg: RunConfig) -> None:
    from textdistill.losses import LOSSES

    loss = cfg.loss
    need(loss.soft in LOSSES, f"loss.soft {preview(loss.soft)} is not a loss; use one of {', '.join(map(repr, LOSSES))}")
    need(loss.temperature > 0, f"loss.temperature must be positive, got {loss.temperature}")
    need(loss.alpha >= 0 and loss.beta >= 0, "loss.alpha and loss.beta must be non-negative")
    need(loss.alpha + loss.beta > 0, "loss.alpha and loss.beta are both 0: nothing to train on; set one above 0")
    need(loss.temperature_end is None or loss.temperature_end > 0,
         f"loss.temperature_end must be positive or empty, got {loss.temperature_end}")
    for name in ("alpha_end", "beta_end", "hidden_weight", "attention_weight", "embedding_weight", "dkd_alpha",
                 "dkd_beta", "adaptive_beta", "adaptive_gamma", "contrastive_weight", "contrastive_bank"):
        v = getattr(loss, name)
        need(v is None or v >= 0, f"loss.{name} must be non-negative, got {v}")
    need(0 <= loss.jsd_beta <= 1, f"loss.jsd_beta must be in [0, 1], got {loss.jsd_beta}")
    need(0 <= loss.skew_alpha < 1, f"loss.skew_alpha must be in [0, 1) (1 makes the loss 0), got {loss.skew_alpha}")
    need(loss.last_k is None or loss.last_k >= 1, f"loss.last_k must be at least 1 or empty, got {loss.last_k}")
    need(loss.soft != "dkd" or loss.dkd_alpha + loss.dkd_beta > 0,
         "loss.dkd_alpha and loss.dkd_beta are both 0: soft 'dkd' would be 0; set one above 0")
    need(loss.contrastive_temperature > 0,
         f"loss.contrastive_temperature must be positive, got {loss.contrastive_temperature}")
    need(loss.contrastive_dim >= 1, f"loss.contrastive_dim must be at least 1, got {loss.contrastive_dim}")
    for pair in loss.layer_pairs or []:
        need(len(pair) == 2 and min(pair) >= 0,
             f"loss.layer_pairs entry {preview(pair)} must be [student layer, teacher layer] with both 0 or more")


def _check_online(cfg: RunConfig) -> None:
    """Online modes train the teacher (or peers) in the loop: nothing that caches or reads a frozen teacher."""
    o, loss = cfg.online, cfg.loss
    need(o.students >= 1, f"online.students must be at least 1, got {o.students}")
    need(o.teacher_learning_rate > 0, f"online.teacher_learning_rate must be positive, got {o.teacher_learning_rate}")
    need(0 < o.teacher_share <= 1, f"online.teacher_share must be in (0, 1], got {o.teacher_share}")
    need(o.teacher_share == 1 or o.mode == "co_training",
         f"online.teacher_share is for online.mode 'co_training' (it is {o.mode!r}); remove it")
    if o.mode != "mutual":
        need(o.students == 1 and o.peer_target == "each" and o.teacher_peer,
             f"online.students, online.teacher_peer and online.peer_target are for online.mode 'mutual' (it is "
             f"{o.mode!r}); set online.mode: mutual or remove them")
    if o.mode == "off":
        return
    mode = f"online.mode {o.mode!r}"
    need(o.mode != "mutual" or o.students + o.teacher_peer >= 2,
         "online.mode 'mutual' needs at least 2 peers: set online.students to 2 or more, or online.teacher_peer: true")
    need(o.students == 1 or cfg.student.init == "shrink" or (cfg.train.dropout or 0) > 0,
         f"online.students {o.students}: students made by student.init {cfg.student.init!r} start identical and, "
         "without dropout, stay identical (the mutual term is 0); set train.dropout above 0 or student.init: shrink")
    need(cfg.teacher.path != "train", f"{mode} trains the teacher in the loop, but teacher.path 'train' trains a "
         "seq2seq teacher from scratch first; give an encoder-decoder folder as teacher.path")
    need(not cfg.teacher.extra_paths and not cfg.teacher.ensemble_trials,
         f"{mode} trains one teacher in the loop; remove teacher.extra_paths and teacher.ensemble_trials")
    need(cfg.student.source == "teacher", f"{mode} feeds the teacher the student's batches, but student.source "
         f"{preview(cfg.student.source)} brings a tokenizer of its own; remove student.source or set online.mode: off")
    need(loss.hidden_loss == "none" and loss.attention_weight == 0 and loss.embedding_weight == 0
         and loss.contrastive_weight == 0,
         f"{mode} compares outputs only; set loss.hidden_loss: none and loss.attention_weight, "
         "loss.embedding_weight and loss.contrastive_weight to 0")
    need(o.mode != "mutual" or loss.soft_weighting == "none",
         "online.mode 'mutual' has no single teacher to weight examples by; set loss.soft_weighting: none")
    need(not loss.class_balance and loss.label_normalization == "examples",
         f"{mode}: loss.class_balance weighs examples by the cached teacher's classes and label_normalization "
         "'labelled' counts the student's cross-entropy only; set class_balance: false and "
         "label_normalization: examples")
    need(not cfg.quantisation.aware, f"{mode} and quantisation.aware cannot be combined yet; distil offline for "
         "quantisation-aware training")
    need(cfg.teacher.scoring == "auto", f"{mode} runs the changing teacher live at every step, so there are no "
         f"cached scores for teacher.scoring {cfg.teacher.scoring!r} to make; set teacher.scoring: auto")
    g = cfg.generation
    need(g.topk == 0 and g.sequence_kd == "off" and g.on_policy_fraction == 0,
         f"{mode} scores the changing teacher live at every step; set generation.topk: 0, sequence_kd: off and "
         "on_policy_fraction: 0")


def _check_sweep(cfg: RunConfig) -> None:
    sw = cfg.sweep
    need(all(v > 0 for v in sw.temperatures), f"sweep.temperatures must all be positive, got {preview(sw.temperatures)}")
    need(all(0 <= v <= 1 for v in sw.alphas),
         f"sweep.alphas must all be in [0, 1] (beta = 1 - alpha), got {preview(sw.alphas)}")
    for size in sw.students:
        need(isinstance(size, str) and size in STUDENT_SIZES or isinstance(size, int) and size >= 1,
             f"sweep.students entry {preview(size)} must be a layer count (at least 1) or one of {', '.join(STUDENT_SIZES)}")
    need(not sw.students or cfg.student.init != "pretrained",
         "sweep.students needs student.init 'teacher_layers' or 'shrink' (a pretrained student has a fixed size)")
    from textdistill.losses import LOSSES

    for soft in sw.softs:
        need(soft in LOSSES,
             f"sweep.softs entry {preview(soft)} is not a loss; use names of {', '.join(map(repr, LOSSES))}")
    need(all(v >= 0 for v in sw.dkd_betas + sw.adaptive_gammas),
         "sweep.dkd_betas and sweep.adaptive_gammas must all be non-negative")
    need(sw.time_budget_s > 0, f"sweep.time_budget_s must be positive, got {sw.time_budget_s}")
    need(sw.min_trial_steps >= 1, f"sweep.min_trial_steps must be at least 1, got {sw.min_trial_steps}")


def _check_generation(cfg: RunConfig) -> None:
    """Cross-field checks of the generation tasks; each message names the field and the fix."""
    g, loss = cfg.generation, cfg.loss
    need(0 <= g.on_policy_fraction <= 1, f"generation.on_policy_fraction must be in [0, 1], got {g.on_policy_fraction}")
    need(g.on_policy_fraction == 0 or loss.beta > 0,
         "generation.on_policy_fraction needs loss.beta > 0 (student samples have no reference to fit)")
    need(g.topk >= 0, f"generation.topk must be 0 (full distribution) or positive, got {g.topk}")
    need(g.topk == 0 or loss.soft == "forward_kl",
         f"generation.topk works with loss.soft 'forward_kl' only (it is {loss.soft!r}); "
         "set topk: 0 or soft: forward_kl")
    need(g.chunk_size >= 0, f"generation.chunk_size must be 0 (off) or positive, got {g.chunk_size}")
    need(g.num_beams >= 1, f"generation.num_beams must be at least 1, got {g.num_beams}")
    need(g.sequence_kd != "off" or not g.with_references,
         "generation.with_references only applies with sequence_kd; set sequence_kd: greedy, beam or sample")
    need(g.max_new_tokens >= 1, f"generation.max_new_tokens must be at least 1, got {g.max_new_tokens}")
    need(g.on_policy_prompt_tokens >= 1, "generation.on_policy_prompt_tokens must be at least 1")
    need(g.sample_temperature > 0, f"generation.sample_temperature must be positive, got {g.sample_temperature}")
