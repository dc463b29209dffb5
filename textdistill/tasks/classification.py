"""Classification: labelled text in, a sequence classifier out.

What this task contributes to the run: labelled files or a built-in dataset; a student built from the
teacher's layers (narrower, with the task's vocabulary) or smaller or pretrained; teacher-labelled token
variants; the teacher's logits (one teacher or several, combined) served through the cache; the objective
CE + soft term (+ intermediate-layer matching); accuracy, macro-F1, agreement, latency and throughput.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from textdistill.cache import Field, cache_key
from textdistill.config import RunConfig, TrainConfig, replaced, to_dict
from textdistill.data.augment import neighbour_table, token_variants
from textdistill.data.batching import WithFields, concat, sequential_batches, subset
from textdistill.data.generated import generate_texts
from textdistill.data.labelled import (ClassificationData, Encoded, EncodedSplits, TextSplit, check_max_length,
                                       encode, encode_splits, load_classification_data)
from textdistill.errors import TextDistillError
from textdistill.evaluation.metrics import classification_metrics
from textdistill.evaluation.predict import predict_logits
from textdistill.evaluation.speed import measure_speed
from textdistill.hashing import content_digest, folder_digest
from textdistill.losses import IGNORE_INDEX
from textdistill.models.inputs import model_inputs
from textdistill.models.loading import (check_same_vocabulary, load_classifier, load_tokenizer, resolve_model_dir,
                                        teacher_label_order)
from textdistill.models.onnx_teacher import onnx_logits, onnx_teacher_session, scoring_backend
from textdistill.models.quantisation import fake_quantised
from textdistill.models.students import construct_student
from textdistill.models.vocab import (check_pruned_vocabulary, check_same_segmentation, common_token_ids, id_map,
                                      pruned_tokenizer, remap_encoded, task_token_ids)
from textdistill.models.width import calibration_batches
from textdistill.pipeline.extra_teachers import (ExtraTeacher, combined_logits, combined_scores, extra_teacher_paths,
                                                load_extra_teachers, teacher_results)
from textdistill.pipeline.representations import teacher_representations
from textdistill.pipeline.signal import Signal, SignalServer, is_signal_cached
from textdistill.pipeline.teacher import builtin_teacher, run_teacher
from textdistill.precision import resolve_precision
from textdistill.tasks.base import Prepared, Teacher, Training
from textdistill.training.intermediate import (build_projections, check_models, resolve_layer_map, teacher_inputs,
                                              use_eager_attention, uses_intermediate)
from textdistill.training.example_objectives import classification_objective
from textdistill.training.heads import ContrastiveTerm, VIDHeads
from textdistill.training.loop import count_examples
from textdistill.training.objectives import fake_quant_evaluation, quantisation_aware
from textdistill.training.online import online_training, trains_teacher
from textdistill.training.schedules import class_balance_weights

log = logging.getLogger("textdistill")


def count_labelled(batch) -> dict[str, int]:
    """Units with `loss.label_normalization: labelled`: the cross-entropy over the step's labelled examples,
    every other term over all of its examples."""
    return {"*": count_examples(batch), "ce": int((batch["targets"] != IGNORE_INDEX).sum())}


@dataclasses.dataclass
class ClassifierTeacher(Teacher):
    order: list[int] = dataclasses.field(default_factory=list)  # index of each data label among its outputs
    extras: list[ExtraTeacher] = dataclasses.field(default_factory=list)  # extra_paths, trials (ensemble_trials)

    def members(self) -> list[tuple[torch.nn.Module, Path, list[int]]]:
        """Every teacher whose targets are combined, this one first: (model, folder, label order)."""
        return [(self.model, self.folder, self.order)] + [(e.model, e.path, e.order) for e in self.extras]


@dataclasses.dataclass
class Splits:
    """The data in the teacher's token ids (what the teacher scores and is tested on) and in the student's."""

    data: ClassificationData
    teacher: EncodedSplits
    student: EncodedSplits
    augmented: Encoded | None  # teacher-labelled variants, teacher ids
    student_augmented: Encoded | None  # the same variants, student ids


class ClassificationTask:
    name = "classification"

    def selection_metric(self, train: TrainConfig) -> str:
        return train.select_on

    def count(self, batch) -> int:
        return count_examples(batch)

    def load_data(self, cfg: RunConfig) -> ClassificationData:
        data = load_classification_data(cfg.data)
        if cfg.data.generated_texts:
            written, data.written = generate_texts(data.train, cfg.data.generated_texts, cfg.data.generator,
                                                   cfg.data.max_length, cfg.data.split_seed,
                                                   cfg.train.mixed_precision, cfg.train.progress)
            data.unlabeled = TextSplit(texts=(data.unlabeled.texts if data.unlabeled else []) + written)
        return data

    def load_teacher(self, cfg: RunConfig, data: ClassificationData) -> ClassifierTeacher:
        if cfg.teacher.path == "builtin" and trains_teacher(cfg):
            # online: the pretrained base with a new head for the data's labels, fine-tuned in the student's loop
            folder = resolve_model_dir(cfg.teacher.base, "teacher.base")
            model = load_classifier(folder, "teacher.base", data.label_names, cfg.trust_remote_code,
                                    cfg.teacher.finetune.seed)
            tokenizer = load_tokenizer(folder, "teacher.base", cfg.trust_remote_code)
            return ClassifierTeacher(folder, {"base": str(folder), "fine_tuned": "in the student's loop"}, model,
                                     tokenizer, order=list(range(len(data.label_names))))
        if cfg.teacher.path == "builtin":
            folder, info = builtin_teacher(cfg, data)
        else:
            folder, info = resolve_model_dir(cfg.teacher.path, "teacher.path"), {}
        tokenizer = load_tokenizer(folder, "teacher", cfg.trust_remote_code)
        model = load_classifier(folder, "teacher.path", trust_remote_code=cfg.trust_remote_code)
        model.eval().requires_grad_(False)  # frozen: scored without gradients, never updated
        extras = load_extra_teachers(cfg, data.label_names, tokenizer, extra_teacher_paths(cfg, info, folder))
        return ClassifierTeacher(folder, info, model, tokenizer, order=teacher_label_order(model, data.label_names),
                                 extras=extras)

    def build_student(self, cfg: RunConfig, data: ClassificationData, teacher: Teacher) -> Prepared:
        tokenizer = teacher.tokenizer
        splits = encode_splits(tokenizer, data, cfg.data.max_length,
                               getattr(teacher.model.config, "max_position_embeddings", None))
        # the student's source: the model its layers, embeddings and tokenizer come from (the teacher by default)
        source, source_tokenizer = student_source(cfg, data, teacher)
        same = same_tokenizer(tokenizer, source_tokenizer)
        if not same and uses_intermediate(cfg.loss):
            raise TextDistillError(
                "intermediate-layer matching (loss.hidden_loss, attention_weight, embedding_weight) compares the "
                "teacher's and the student's tokens one by one, but the student's tokenizer is not the teacher's; "
                "turn matching off or build the student from the teacher (student.source 'teacher')")
        src = splits if same else encode_splits(source_tokenizer, data, cfg.data.max_length,
                                                getattr(source.config, "max_position_embeddings", None))
        kept_ids = (task_vocabulary(source_tokenizer, data, cfg.student.vocab_common) if cfg.student.vocab == "task"
                    else None)
        calibration = None
        if cfg.student.init == "teacher_layers" and (cfg.student.hidden_size or cfg.student.num_heads):
            calibration = calibration_batches(src.train, cfg.train.seed)  # ranks the source's residual dimensions

        def rebuild(seed: int = cfg.train.seed):  # the student and the baseline start from the same weights
            return construct_student(cfg.student, source, data.label_names, seed,
                                     cfg.trust_remote_code, kept_ids, calibration)

        student, construction = rebuild()
        student_tokenizer = source_tokenizer
        rows = student.get_input_embeddings().num_embeddings
        if kept_ids is None:
            check_same_vocabulary(source_tokenizer, student_tokenizer, rows)
        else:
            student_tokenizer = pruned_tokenizer(source_tokenizer, kept_ids)
            check_pruned_vocabulary(source_tokenizer, student_tokenizer, kept_ids, rows)
            log.info("student vocabulary: %d of the %d tokens of %s (the task's text, the special tokens%s)",
                     len(kept_ids), len(source_tokenizer), "the teacher" if source is teacher.model else "its source",
                     f" and the {cfg.student.vocab_common} most common" if cfg.student.vocab_common else "")
        check_max_length(cfg.data.max_length, getattr(student.config, "max_position_embeddings", None))
        variants = teacher_variants = None
        if cfg.data.augment_copies:
            # variants are made in the student's source tokens; the teacher reads them as they are, or as text
            neighbours = None
            if "neighbours" in cfg.data.augment_kinds:
                neighbours = neighbour_table(source_tokenizer, source.get_input_embeddings().weight, src.train)
            variants = token_variants(src.train, cfg.data.augment_copies, cfg.data.augment_share,
                                      set(source_tokenizer.all_special_ids), source_tokenizer.mask_token_id,
                                      cfg.data.split_seed, cfg.data.augment_kinds, neighbours)
            teacher_variants = variants if same else retokenized(variants, source_tokenizer, tokenizer,
                                                                 cfg.data.max_length)
        own, own_augmented = student_splits(src, variants, student_tokenizer, data, cfg.data.max_length, kept_ids,
                                            len(source_tokenizer))
        summary = {"label_names": data.label_names, "construction": construction}
        if not same:
            summary["student_source"] = str(cfg.student.source if cfg.student.init == "teacher_layers"
                                            else cfg.student.path)
            if cfg.student.fine_tune_source:
                summary["student_source"] += " (fine-tuned on the labelled data)"
        return Prepared(student, student_tokenizer, lambda seed=cfg.train.seed: rebuild(seed)[0],
                        Splits(data, splits, own, teacher_variants, own_augmented), summary)

    def training(self, cfg: RunConfig, prepared: Prepared, teacher: ClassifierTeacher,
                 serve: SignalServer) -> Training:
        s: Splits = prepared.data
        own = s.student
        online = cfg.online.mode != "off"
        scores, scoring = {}, {}
        if not online:
            # The teacher is frozen and in eval mode, so its logits are a pure function of the input: scoring
            # each training example once gives exactly what a call at every step would, at a fraction of the cost.
            scores, scoring = teacher_scores(serve, cfg, teacher, {"train": s.teacher.train,
                                                                   "unlabeled": s.teacher.unlabeled,
                                                                   "augmented": s.augmented}, s.teacher.validation)
            own.train.teacher_logits = scores["train"]
            if own.unlabeled is not None:
                own.unlabeled.teacher_logits = scores["unlabeled"]
            if s.student_augmented is not None:
                s.student_augmented.teacher_logits = scores["augmented"]
        train_set = concat(own.train, own.unlabeled) if own.unlabeled is not None else own.train
        # variants and written texts add data, not steps: the budget is the labelled (and unlabelled) text's
        budget = len(train_set) - (s.data.written["texts"] if s.data.written else 0)
        if s.student_augmented is not None:
            train_set = concat(train_set, s.student_augmented)
        if cfg.loss.class_balance:  # offline only (config_checks): the weights come from the cached teacher logits
            gold = own.train.labels[own.train.labels != IGNORE_INDEX]
            train_set = dataclasses.replace(train_set, example_weights=class_balance_weights(
                train_set.teacher_logits, gold, len(s.data.label_names), uniform=cfg.loss.class_balance == "uniform"))
        # a checkpoint only continues on the data and teacher outputs it was trained on
        data_identity = {"train": _digest(s.teacher.train)}
        identity = {**data_identity, "unlabeled": _digest(s.teacher.unlabeled), "augmented": _digest(s.augmented),
                    "teacher_scores": content_digest(scores) if scores else None}
        summary, rates, student_form = ({"teacher_scoring": scoring} if scoring else {}), None, None
        if s.data.written:
            summary["written_texts"] = s.data.written
        if online:
            setup = online_training(cfg, teacher.model, lambda k: self._peer(cfg, prepared, k),
                                    _student_positions, _teacher_positions(teacher.order))
            objective, extra, rates = setup.objective, setup.extra, setup.learning_rates
            identity["online"] = to_dict(cfg.online)
            summary["online"] = setup.summary
        else:
            objective, extra = student_objective(cfg, prepared.student, teacher.model)
        if cfg.loss.contrastive_weight > 0:
            representations = teacher_representations(
                serve, teacher.model, teacher.folder, [s.teacher.train, s.teacher.unlabeled, s.augmented],
                cfg.teacher.batch_size, cfg.data.max_length)  # [N, D_t], in train_set's order
            fill_bank(extra["contrastive"], representations, cfg.train.seed)
            train_set = WithFields(train_set, teacher_repr=representations, example_index=torch.arange(len(train_set)))
            identity["teacher_representations"] = content_digest(representations)

        def evaluate(m):
            logits = predict_logits(m, own.validation, cfg.teacher.batch_size)
            return classification_metrics(logits.argmax(-1), own.validation.labels, s.data.label_names)

        if cfg.quantisation.aware:  # judged as it will be served: fake-quantised like the int8 export
            objective = quantisation_aware(objective, cfg.quantisation.start)
            evaluate, student_form = fake_quant_evaluation(evaluate), fake_quantised
            summary["quantisation"] = {"aware": True, "start": cfg.quantisation.start}
        sizes = {"train": len(s.teacher.train), "validation": len(s.teacher.validation), "test": len(s.teacher.test),
                 "unlabeled": len(s.teacher.unlabeled) if s.teacher.unlabeled is not None else 0,
                 "augmented": len(s.augmented) if s.augmented is not None else 0}
        def evaluate_teacher():  # the target the student learns (every teacher combined), read in the teacher's tokens
            logits = combined_logits([predict_logits(m, s.teacher.validation, cfg.teacher.batch_size)[:, order]
                                      for m, _, order in teacher.members()], cfg)
            return classification_metrics(logits.argmax(-1), s.teacher.validation.labels, s.data.label_names)

        count = count_labelled if cfg.loss.label_normalization == "labelled" else None
        return Training(train_set, own.train, objective, budget, evaluate, identity, data_identity, sizes, extra,
                        count, extra_learning_rates=rates, trains_teacher=online and trains_teacher(cfg),
                        student_form=student_form, summary=summary,
                        evaluate_teacher=evaluate_teacher)

    def _peer(self, cfg: RunConfig, prepared: Prepared, k: int) -> torch.nn.Module:
        """Mutual learning's k-th extra student: built like the run's student, with seed train.seed + k."""
        return prepared.rebuild(seed=cfg.train.seed + k)

    def load_model(self, cfg: RunConfig, folder: Path, role: str) -> torch.nn.Module:
        return load_classifier(folder, role, trust_remote_code=cfg.trust_remote_code)

    def probe_batch(self, prepared: Prepared):
        test = prepared.data.student.test
        return test.collate(list(range(min(4, len(test)))))

    def test_results(self, cfg: RunConfig, models: dict[str, torch.nn.Module], prepared: Prepared,
                     teacher: ClassifierTeacher) -> tuple[dict[str, dict], dict]:
        s: Splits = prepared.data
        # each model reads the test text through its own tokenizer (the teacher's ids for the teacher)
        test_data = {name: s.teacher.test if name == "teacher" else s.student.test for name in models}
        logits = {name: predict_logits(m, test_data[name], cfg.teacher.batch_size) for name, m in models.items()}
        logits["teacher"] = logits["teacher"][:, teacher.order]
        labels = s.teacher.test.labels
        teacher_pred = logits["teacher"].argmax(-1)
        results = {name: classification_metrics(values.argmax(-1), labels, s.data.label_names,
                                                None if name == "teacher" else teacher_pred)
                   for name, values in logits.items()}
        speed = measure_speed(models, test_data, cfg.report.latency_examples, cfg.report.throughput_batches)
        for name in models:
            results[name].update(speed[name])
        entries = {}
        if teacher.extras:
            members = teacher.members()  # the first is the teacher scored above
            extra_logits = [predict_logits(m, s.teacher.test, cfg.teacher.batch_size)[:, order]
                            for m, _, order in members[1:]]
            entries["teachers"] = teacher_results(cfg, [str(folder) for _, folder, _ in members],
                                                  [logits["teacher"]] + extra_logits, labels, s.data.label_names)
        return results, entries

    def train_teacher(self, cfg: RunConfig, output: str | Path | None = None, overwrite: bool = False) -> dict:
        """`textdistill teacher`: fine-tune `teacher.base` on the data into `output`."""
        return run_teacher(cfg, output=output, overwrite=overwrite)


def task_vocabulary(tokenizer, data: ClassificationData, common: int = 0) -> list[int]:
    """Sorted teacher ids kept by student.vocab 'task': the special tokens, the train, unlabelled and
    validation text's, and the `common` most common tokens of the vocabulary (student.vocab_common)."""
    kept: set[int] = set(common_token_ids(tokenizer, common))
    for split in (data.train, data.unlabeled, data.validation):
        if split is not None:
            kept.update(task_token_ids(tokenizer, split.texts, split.pairs))
    return sorted(kept)


def student_splits(splits: EncodedSplits, augmented: Encoded | None, student_tokenizer, data: ClassificationData,
                   max_length: int, kept_ids: list[int] | None,
                   teacher_vocab_size: int) -> tuple[EncodedSplits, Encoded | None]:
    """The splits (and variants) in the student's token ids. With the teacher's vocabulary these are the
    teacher's own.

    With a pruned vocabulary, the training parts are the teacher's ids remapped (exactly what the pruned
    tokenizer gives on that text, checked here), carrying the teacher's ids for the live teacher; validation
    and test are the student's own tokenisation of the raw text, as it will be served.
    """
    if kept_ids is None:
        return splits, augmented
    # the teacher's tokenisation of these splits has already said what it truncated; the student's own
    # tokenisation of raw text speaks only where it cuts a different number of examples
    own = encode_splits(student_tokenizer, data, max_length, None, warn=False)
    for role in ("validation", "test"):
        mine, theirs = getattr(own, role), getattr(splits, role)
        if mine.truncated != theirs.truncated:
            log.warning("%s: %d of %d examples are longer than data.max_length=%d tokens in the student's pruned "
                        "vocabulary (%d in the teacher's) and were truncated", role, mine.truncated, len(mine),
                        max_length, theirs.truncated)
    mapping = id_map(kept_ids, teacher_vocab_size, student_tokenizer.unk_token_id)
    pad = own.train.pad_id
    train, unlabeled = remap_encoded(splits.train, mapping, pad), remap_encoded(splits.unlabeled, mapping, pad)
    check_same_segmentation(own.train.input_ids, train.input_ids, "train")
    if unlabeled is not None:
        check_same_segmentation(own.unlabeled.input_ids, unlabeled.input_ids, "unlabeled")
    return EncodedSplits(train, own.validation, own.test, unlabeled), remap_encoded(augmented, mapping, pad)


def student_source(cfg: RunConfig, data: ClassificationData, teacher: Teacher):
    """(model, tokenizer) the student is made from: the teacher; `student.source` for 'teacher_layers'; the
    pretrained folder for 'pretrained' (which is loaded again as the student)."""
    s = cfg.student
    if s.init == "pretrained":
        folder = Path(s.path)
        model = load_classifier(folder, "student.path", data.label_names, cfg.trust_remote_code, cfg.train.seed)
        return model.eval(), load_tokenizer(folder, "student.path", cfg.trust_remote_code)
    if s.init != "teacher_layers" or s.source == "teacher":
        return teacher.model, teacher.tokenizer
    if s.fine_tune_source:  # the built-in teacher's recipe on `source`, cached like any built-in teacher
        folder, info = builtin_teacher(replaced(cfg, {"teacher.base": s.source}), data)
        log.info("student source: %s fine-tuned on the labelled data (validation accuracy %.2f%%)", s.source,
                 100 * (info.get("validation_accuracy") or 0.0))
    else:
        folder = resolve_model_dir(s.source, "student.source")
    model = load_classifier(folder, "student.source", data.label_names, cfg.trust_remote_code, cfg.train.seed)
    return model.eval(), load_tokenizer(folder, "student.source", cfg.trust_remote_code)


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers give every token the same id (what lets a student read the teacher's ids)."""
    return a is b or a.get_vocab() == b.get_vocab()


def retokenized(part: Encoded, source_tokenizer, tokenizer, max_length: int) -> Encoded:
    """The examples of `part` (ids of `source_tokenizer`) read back as text and tokenised by `tokenizer`: how a
    teacher with another tokenizer reads the student's variants. Segments follow the token type ids."""
    special = set(source_tokenizer.all_special_ids)
    texts, pairs = [], []
    for i, ids in enumerate(part.input_ids):
        types = part.token_type_ids[i] if part.token_type_ids else [0] * len(ids)
        segments = [[t for t, s in zip(ids, types) if s == seg and t not in special] for seg in (0, 1)]
        texts.append(source_tokenizer.decode(segments[0]))
        pairs.append(source_tokenizer.decode(segments[1]))
    split = TextSplit(texts=texts, pairs=pairs if any(pairs) else None)
    return encode(tokenizer, split, part.labels.tolist(), max_length, "variants")


def student_objective(cfg: RunConfig, student: torch.nn.Module, teacher: torch.nn.Module):
    """The distillation objective and its extra trained module (None when nothing is trained beside the
    student): the width projections of intermediate matching, VID's heads, the contrastive heads and bank.

    Intermediate matching is resolved and checked here, at start-up, before any training.
    """
    loss = cfg.loss
    torch.manual_seed(cfg.train.seed)
    parts: dict[str, torch.nn.Module] = {}
    matches = projections = vid = contrastive = None
    if uses_intermediate(loss):
        matches = resolve_layer_map(loss, student.config.num_hidden_layers, teacher.config.num_hidden_layers)
        check_models(loss, student, teacher)
        if loss.attention_weight > 0:
            use_eager_attention(student)
            use_eager_attention(teacher)
        if loss.hidden_loss == "vid":  # VID's regressors bridge the widths: projections for the embeddings only
            vid = VIDHeads([f"layer{m.student_layer}_to{m.teacher_layer}" for m in matches],
                           student.config.hidden_size, teacher.config.hidden_size)
            parts["vid"] = vid
        projections = build_projections(loss, [] if vid is not None else matches, student, teacher)
        log.info("intermediate matching: layers %s (student, teacher); %d projection(s)%s, outside the student",
                 [(m.student_layer, m.teacher_layer) for m in matches], len(projections.maps),
                 " and VID heads" if vid is not None else "")
        if len(projections.maps):
            parts["projections"] = projections
    if loss.contrastive_weight > 0:
        contrastive = ContrastiveTerm(student.config.hidden_size, teacher.config.hidden_size, loss.contrastive_dim,
                                      loss.contrastive_temperature, loss.contrastive_bank)
        parts["contrastive"] = contrastive
    objective = classification_objective(loss, teacher if matches else None, matches, projections, vid=vid,
                                         contrastive=contrastive)
    if not parts:
        return objective, None
    # projections alone stay the extra module itself, as checkpoints written before the other heads hold them
    return objective, projections if set(parts) == {"projections"} else torch.nn.ModuleDict(parts)


def fill_bank(contrastive: ContrastiveTerm, representations: torch.Tensor, seed: int) -> None:
    """The memory bank filled, before the first step, with the cached teacher representations of random
    training examples (a seeded draw, so a rerun sees the same negatives)."""
    if contrastive.bank is None:
        return
    size = contrastive.bank.representations.shape[0]
    ids = torch.randperm(len(representations), generator=torch.Generator().manual_seed(seed))[:size]
    contrastive.bank.push(representations[ids], ids)


def _student_positions(model: torch.nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Every example is a position for online training: logits `[B, C]`, labels `[B]` (IGNORE_INDEX unlabelled)."""
    return model(**model_inputs(batch)).logits, batch["targets"]


def _teacher_positions(order: list[int]):
    """As `_student_positions` for the teacher: it reads its own token ids (`teacher_input_ids` beside a pruned
    student vocabulary) and its logits are put in the data's label order (`order`)."""

    def positions(model: torch.nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = model_inputs(batch)
        return model(**teacher_inputs(batch, inputs)).logits[:, order], batch["targets"]  # [B, C], [B]

    return positions


def teacher_scores(serve: SignalServer, cfg: RunConfig, teacher: ClassifierTeacher,
                   parts: dict[str, Encoded | None], validation: Encoded) -> tuple[dict[str, torch.Tensor], dict]:
    """The teacher's logits ([N, C], in the data's label order) for each part; with extra teachers, their
    targets combined (`extra_teachers.combined_scores`). Each teacher's scores of each part are one signal,
    named in its log line ('teacher scores of train', 'teacher 2 scores of augmented'). Also returns how
    they were scored where `teacher.scoring` is 'int8' (`int8_scoring`), for the run's summary."""
    # 'float32': full-precision scores whatever the training's autocast (ONNX Runtime on a CPU)
    precision = "no" if cfg.teacher.scoring == "float32" else resolve_precision(cfg.train.mixed_precision)
    teachers = teacher.members()
    scores, checks = {}, {}
    for i, (model, folder, order) in enumerate(teachers):
        digest = folder_digest(Path(folder))
        who = "teacher" if len(teachers) == 1 else f"teacher {i + 1}"
        sessions = {}  # this teacher's checked ONNX Runtime sessions, opened once for all its parts

        def scored(part: Encoded, name: str, backend: str) -> torch.Tensor:
            signal = score_signal(model, part, cfg.teacher.batch_size, digest, cfg.data.max_length, precision,
                                  backend, label=f"{who} scores of {name}", sessions=sessions)
            return torch.from_numpy(np.array(serve(signal)["logits"]))[:, order].contiguous()

        backend = "auto"
        if cfg.teacher.scoring == "int8":
            backend, checks[who] = int8_scoring(model, digest, validation, scored, who, sessions)
        for name, part in parts.items():
            if part is not None:
                scores[name if i == 0 else f"{name}@{i}"] = scored(part, name, backend)
    return combined_scores(scores, len(teachers), cfg), ({"int8": checks} if checks else {})


INT8_MAX_DROP = 0.01  # validation accuracy an int8 teacher may lose against full precision before it is refused


def int8_scoring(model: torch.nn.Module, digest: str, validation: Encoded, scored, who: str,
                 sessions: dict | None = None) -> tuple[str, dict]:
    """('int8' or 'auto', what was measured): the int8 teacher is used where it runs (a CPU) and keeps its
    validation accuracy within INT8_MAX_DROP of the full-precision teacher's. `scored(part, name, backend)`
    gives a teacher's cached logits in the data's label order; `sessions` is its memo (`checked_session`)."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        log.info("teacher scoring: int8 runs on a CPU; the %s scores on %s in full precision", who, device)
        return "auto", {"used": False, "reason": f"the teacher is on {device}"}
    if checked_session(sessions if sessions is not None else {}, model, digest, "int8") is None:  # logged there
        return "auto", {"used": False, "reason": "no ONNX Runtime session matched the teacher"}
    labelled = validation.labels != IGNORE_INDEX
    full = scored(validation, "validation", "auto").argmax(-1)
    int8 = scored(validation, "validation (int8)", "int8").argmax(-1)
    measured = {"validation_agreement": float((full == int8)[labelled].float().mean()),
                "validation_accuracy": float((int8 == validation.labels)[labelled].float().mean()),
                "full_precision_validation_accuracy": float((full == validation.labels)[labelled].float().mean())}
    used = measured["validation_accuracy"] >= measured["full_precision_validation_accuracy"] - INT8_MAX_DROP
    log.log(logging.INFO if used else logging.WARNING,
            "teacher scoring: the %s with int8 weights agrees with full precision on %.1f%% of validation, "
            "accuracy %.2f%% against %.2f%%: %s", who, 100 * measured["validation_agreement"],
            100 * measured["validation_accuracy"], 100 * measured["full_precision_validation_accuracy"],
            "scoring with int8 weights" if used else
            f"more than {100 * INT8_MAX_DROP:.0f} point lost, so scoring in full precision (teacher.scoring 'auto')")
    return ("int8" if used else "auto"), {"used": used, **measured}


def checked_session(sessions: dict, teacher: torch.nn.Module, teacher_digest: str, backend: str):
    """`onnx_teacher_session` for 'onnxruntime' or 'int8', opened and checked once per `sessions` memo (one
    per teacher in a run): None, remembered too, where there is no session that matches PyTorch."""
    if backend not in sessions:
        sessions[backend] = onnx_teacher_session(teacher, teacher_digest, int8=backend == "int8")
    return sessions[backend]


def score_signal(teacher: torch.nn.Module, part: Encoded, batch_size: int, teacher_digest: str,
                 max_length: int | None, precision: str = "no", backend: str = "auto",
                 label: str = "teacher scores", sessions: dict | None = None) -> Signal:
    """[N, C] teacher logits (the teacher's own label order) of a tokenised split.

    Keyed by the teacher folder (weights, config, tokenizer), the token ids, max_length, the scoring
    precision and backend; scored in length-sorted chunks of a few batches, each one saved, so an
    interrupted build resumes. `precision` 'bf16' scores under bfloat16 autocast (faster on a CPU with
    native bf16; docs/measurements.md). `backend` 'auto' scores float32 on a CPU through ONNX Runtime
    (`models/onnx_teacher.py`; PyTorch if its check fails), else PyTorch; 'pytorch' or 'onnxruntime' force one;
    'int8' scores through ONNX Runtime with int8 weights (`teacher.scoring`; PyTorch if its check fails).
    Float32 ONNX Runtime scores already in the cache are read without exporting or opening a session.
    """
    n_labels = teacher.config.num_labels
    settings = {"max_length": max_length, "labels": n_labels}
    if precision != "no":  # float32 keys stay as they were, so existing caches remain valid
        settings["precision"] = precision
    if backend not in ("auto", "pytorch", "onnxruntime", "int8"):
        raise ValueError(f"backend must be 'auto', 'pytorch', 'onnxruntime' or 'int8', not {backend!r}")
    if backend == "auto":
        backend = scoring_backend(precision, next(teacher.parameters()).device)
    fields = {"logits": Field((n_labels,))}
    batches = sequential_batches(part.lengths, batch_size)
    chunks = [sum(batches[i : i + 4], []) for i in range(0, len(batches), 4)]
    memo = sessions if sessions is not None else {}  # a memo shared by calls on the same teacher

    inputs = (np.asarray(part.lengths, dtype=np.int64),  # what the key says of the examples, made once
              np.asarray([i for ids in part.input_ids for i in ids], dtype=np.int64),
              np.asarray([i for ids in (part.token_type_ids or []) for i in ids], dtype=np.int64))

    def signal(settings: dict, score) -> Signal:
        key = cache_key("classification-logits", teacher_digest, settings, *inputs)
        return Signal("scores", key, len(part), fields, score, chunks, label)

    def in_pytorch(index: list[int], precision: str = precision) -> dict[str, torch.Tensor]:
        return {"logits": predict_logits(teacher, subset(part, index), batch_size, precision=precision)}

    if backend in ("onnxruntime", "int8"):  # float32 too, but other kernels (logits differ at 1e-6): own entry
        # no autocast precision: ONNX Runtime scores the same whatever the run's autocast
        onnx = {**{k: v for k, v in settings.items() if k != "precision"},
                "backend": "onnxruntime-int8" if backend == "int8" else "onnxruntime"}

        def in_onnx(index: list[int]) -> dict[str, torch.Tensor]:
            session = checked_session(memo, teacher, teacher_digest, backend)
            if session is None:  # float32 only (int8 returned above with a session): PyTorch float32, within 1e-6
                return in_pytorch(index, "no")
            return {"logits": onnx_logits(session, subset(part, index), batch_size)}

        cached = signal(onnx, in_onnx)
        if backend == "onnxruntime" and backend not in memo and is_signal_cached(cached):
            return cached  # float32 scores already made: no session is opened (or exported) to read them
        if checked_session(memo, teacher, teacher_digest, backend) is not None:
            return cached
    return signal(settings, in_pytorch)


def cached_teacher_logits(teacher: torch.nn.Module, part: Encoded, batch_size: int, teacher_digest: str,
                          max_length: int | None, precision: str = "no", backend: str = "auto") -> torch.Tensor:
    """`score_signal` served on its own: [N, C] logits, from the cross-run cache or scored now."""
    signal = score_signal(teacher, part, batch_size, teacher_digest, max_length, precision, backend)
    return torch.from_numpy(np.array(SignalServer()(signal)["logits"]))


def _digest(part: Encoded | None) -> str | None:
    """What a tokenised split is, for a checkpoint's identity: its token ids and labels."""
    return None if part is None else content_digest(part.input_ids, part.labels)
