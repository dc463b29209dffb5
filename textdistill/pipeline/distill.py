"""`distill`: train a student from a teacher, a no-teacher baseline beside it, evaluate all three, report.

The run has four phases: teacher scoring, student, baseline, evaluation and report. Each finished
phase leaves its outputs and a marker, so `resume` skips it; the phase in progress continues from its
last training checkpoint. With several processes (`accelerate launch`, `torchrun`) every process
trains; the main process alone scores with the teacher (shared with the others) and writes files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from safetensors.torch import load_file, save_file

from textdistill.cache import Field, cache_key, cached_outputs
from textdistill.config import RunConfig
from textdistill.data.augment import token_variants
from textdistill.data.classification import Encoded, load_classification_data, sequential_batches
from textdistill.evaluation.metrics import classification_metrics
from textdistill.evaluation.predict import predict_logits
from textdistill.evaluation.speed import measure_speed
from textdistill.models.loading import (check_same_vocabulary, load_classifier, load_tokenizer,
                                        resolve_model_dir, teacher_label_order)
from textdistill.models.onnx_teacher import onnx_logits, onnx_teacher_session, scoring_backend
from textdistill.models.students import construct_student, count_parameters
from textdistill.models.vocab import (check_pruned_vocabulary, check_same_segmentation, id_map, pruned_tokenizer,
                                      remap_encoded, task_token_ids)
from textdistill.models.width import calibration_batches
from textdistill.ownership import OwnedFolder
from textdistill.pipeline.ensemble import ExtraTeacher, combined_scores, load_extra_teachers, teacher_results
from textdistill.pipeline.phases import finished_phase, mark_finished
from textdistill.pipeline.runs import (EncodedSplits, apply_threads, check_max_length, check_sources, concat,
                                       encode_splits, folder_weights_bytes, open_run_folder, save_model, write_json)
from textdistill.pipeline.teacher import builtin_teacher, cache_root
from textdistill.report.render import write_report
from textdistill.training.checkpoint import atomic_write, file_digest
from textdistill.training.distributed import is_main, share_from_main, wait_for_everyone
from textdistill.training.loop import TrainResult, total_steps, train
from textdistill.training.precision import resolve_precision
from textdistill.training.resume import remove_checkpoints
from textdistill.training.intermediate import (build_projections, check_models, resolve_layer_map, use_eager_attention,
                                              uses_intermediate)
from textdistill.training.objectives import classification_objective, label_objective

log = logging.getLogger("textdistill")
SCORES = "teacher_scores.safetensors"
SWEEP = "sweep.json"


def run_distill(cfg: RunConfig, overwrite: bool = False, resume: bool = False, *, sweep: dict | None = None,
                trial_steps: int | None = None, command: str = "distill", may_replace=None) -> dict | None:
    """Run the whole recipe and return the summary that `report.md` is made from (None on processes other
    than the main one). With `resume`, continue the interrupted run in `cfg.output_dir`.

    `sweep` (the grid of `distill --sweep`) is kept in the run folder and added to the summary. With
    `trial_steps` (a sweep's trial) the student trains for at most that many steps and the run stops there,
    returning its training result, the teacher's info and the steps and evaluation interval of a full run.
    `command` is recorded in the run folder's marker; `may_replace(marker)` narrows which earlier run
    `overwrite` may replace (`textdistill.ownership.OwnedFolder.open`).
    """
    started = time.perf_counter()
    apply_threads(cfg.train.threads)
    data = load_classification_data(cfg.data)  # the new config and data are checked before an old run is touched
    check_sources(cfg)
    with open_run_folder(cfg, overwrite, resume, command=command, may_replace=may_replace) as folder:
        return _distill(cfg, folder, data, started, resume, sweep, trial_steps)


def _distill(cfg: RunConfig, folder: OwnedFolder, data, started: float, resume: bool, sweep: dict | None,
             trial_steps: int | None) -> dict | None:
    run_dir = folder.path
    if sweep is not None and is_main():
        write_json(run_dir / SWEEP, sweep)
    elif resume and (run_dir / SWEEP).is_file():
        sweep = json.loads((run_dir / SWEEP).read_text(encoding="utf-8"))
    if resume and finished_phase(run_dir, "report") is not None:
        log.info("%s: the run had already finished", run_dir)
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8")) if is_main() else None

    if cfg.teacher.path == "builtin":
        teacher_dir, teacher_info = builtin_teacher(cfg, data, resume=resume)
    else:
        teacher_dir, teacher_info = resolve_model_dir(cfg.teacher.path, "teacher.path"), {}
    tokenizer = load_tokenizer(teacher_dir, "teacher", cfg.trust_remote_code)
    teacher = load_classifier(teacher_dir, "teacher.path", trust_remote_code=cfg.trust_remote_code)
    teacher.eval().requires_grad_(False)  # frozen: scored without gradients, never updated
    order = teacher_label_order(teacher, data.label_names)
    extras = load_extra_teachers(cfg, data.label_names, tokenizer)

    splits = encode_splits(tokenizer, data, cfg.data.max_length, getattr(teacher.config, "max_position_embeddings", None))
    kept_ids = task_vocabulary(tokenizer, data) if cfg.student.vocab == "task" else None
    calibration = None
    if cfg.student.init == "teacher_layers" and (cfg.student.hidden_size or cfg.student.num_heads):
        calibration = calibration_batches(splits.train, cfg.train.seed)  # ranks the teacher's residual dimensions

    def new_student():  # the student and the baseline start from the same weights
        return construct_student(cfg.student, teacher, data.label_names, cfg.train.seed, cfg.trust_remote_code,
                                 kept_ids, calibration)

    student, construction = new_student()
    student_tokenizer = tokenizer
    if cfg.student.init == "pretrained":
        student_tokenizer = load_tokenizer(Path(cfg.student.path), "student.path", cfg.trust_remote_code)
    if kept_ids is None:
        check_same_vocabulary(tokenizer, student_tokenizer, student.get_input_embeddings().num_embeddings)
    else:
        student_tokenizer = pruned_tokenizer(tokenizer, kept_ids)
        check_pruned_vocabulary(tokenizer, student_tokenizer, kept_ids, student.get_input_embeddings().num_embeddings)
        log.info("student vocabulary: %d of the teacher's %d tokens (the task's text and the special tokens)",
                 len(kept_ids), len(tokenizer))
    check_max_length(cfg.data.max_length, getattr(student.config, "max_position_embeddings", None))

    # Phase 1. The teacher is frozen and in eval mode, so its logits are a pure function of the input:
    # scoring each training example once gives exactly what a call at every step would, at a fraction of the cost.
    folder.started()  # everything is loaded and checked: the run it replaces (if any) can go
    augmented = None
    if cfg.data.augment_copies:
        augmented = token_variants(splits.train, cfg.data.augment_copies, cfg.data.augment_share,
                                   set(tokenizer.all_special_ids), tokenizer.mask_token_id, cfg.data.split_seed,
                                   cfg.data.augment_kinds)
    scores, scoring_seconds = teacher_scores(run_dir, teacher, {"train": splits.train, "unlabeled": splits.unlabeled,
                                                                "augmented": augmented},
                                             order, cfg.teacher.batch_size, resume, teacher_dir=teacher_dir,
                                             max_length=cfg.data.max_length, extras=extras,
                                             precision=resolve_precision(cfg.train.mixed_precision))
    scores = combined_scores(scores, 1 + len(extras), cfg)
    splits.train.teacher_logits = scores["train"]
    if splits.unlabeled is not None:
        splits.unlabeled.teacher_logits = scores["unlabeled"]
    if augmented is not None:
        augmented.teacher_logits = scores["augmented"]
    # what the student and the baseline read: the same splits, in the student's token ids
    own = student_splits(splits, augmented, student_tokenizer, data, cfg.data.max_length, kept_ids, len(tokenizer))
    train_set = concat(own.train, own.unlabeled)
    student_train = cfg.train
    if augmented is not None:
        # Variants add data, not steps: the student keeps the baseline's optimizer steps and evaluation
        # schedule, so the comparison is at the same training budget.
        budget = total_steps(len(train_set), cfg.train)
        per_epoch = total_steps(len(train_set), dataclasses.replace(cfg.train, epochs=1.0, max_steps=None))
        train_set = concat(train_set, own.augmented)
        student_train = dataclasses.replace(cfg.train, max_steps=budget, eval_every=cfg.train.eval_every or per_epoch)
    if trial_steps is not None:
        full_steps = total_steps(len(train_set), student_train)
        eval_every = student_train.eval_every or total_steps(
            len(train_set), dataclasses.replace(student_train, epochs=1.0, max_steps=None))
        student_train = dataclasses.replace(student_train, max_steps=min(trial_steps, full_steps), checkpoint_every=0)
    # a checkpoint only continues on the data and teacher outputs it was trained on
    data_identity = {"train": _digest_encoded(splits.train)}
    identity = {**data_identity, "unlabeled": _digest_encoded(splits.unlabeled),
                "augmented": _digest_encoded(augmented), "teacher_scores": _digest(scores)}

    def evaluate(m):
        logits = predict_logits(m, own.validation, cfg.teacher.batch_size)
        return classification_metrics(logits.argmax(-1), own.validation.labels, data.label_names)

    # Phases 2 and 3: the student with the teacher, and the same student without one (same initial
    # weights, same budget, gold labels only).
    models: dict[str, torch.nn.Module] = {"teacher": teacher}
    runs: dict[str, dict] = {}
    attn_impl = {m: m.config._attn_implementation for m in (student, teacher)}
    objective, projections = student_objective(cfg, student, teacher)
    models["student"], runs["student"] = trained_phase(
        run_dir, "student", student, student_tokenizer, resume, cfg,
        lambda: train(student, train_set, objective, student_train, name="student", run_dir=run_dir,
                      evaluate=evaluate, extra=projections, resume=resume, identity=identity))
    for m, impl in attn_impl.items():  # attention matching needed eager attention; time and save as loaded
        if m.config._attn_implementation != impl and hasattr(m, "set_attn_implementation"):
            m.set_attn_implementation(impl)
    runs["student"]["teacher_scoring_seconds"] = scoring_seconds
    if trial_steps is not None:
        return {"student": runs["student"], "teacher": teacher_info, "full_steps": full_steps, "eval_every": eval_every}
    if cfg.report.baseline:
        baseline = new_student()[0]
        models["baseline"], runs["baseline"] = trained_phase(
            run_dir, "baseline", baseline, student_tokenizer, resume, cfg,
            lambda: train(baseline, own.train, label_objective(), cfg.train, name="baseline", run_dir=run_dir,
                          evaluate=evaluate, resume=resume, identity=data_identity))
    if not is_main():
        return None

    # Phase 4: evaluation and report, on the main process.
    # each model reads the test text through its own tokenizer (the teacher's ids for the teacher)
    test_data = {name: splits.test if name == "teacher" else own.test for name in models}
    test_logits = {name: predict_logits(m, test_data[name], cfg.teacher.batch_size) for name, m in models.items()}
    test_logits["teacher"] = test_logits["teacher"][:, order]
    teacher_pred = test_logits["teacher"].argmax(-1)
    results = {}
    for name, logits in test_logits.items():
        results[name] = classification_metrics(logits.argmax(-1), splits.test.labels, data.label_names,
                                               None if name == "teacher" else teacher_pred)
    speed = measure_speed(models, test_data, cfg.report.latency_examples, cfg.report.throughput_batches)
    folders = {"teacher": teacher_dir, "student": run_dir / "student", "baseline": run_dir / "baseline"}
    for name, m in models.items():
        results[name].update(speed[name])
        results[name]["parameters"] = count_parameters(m)
        results[name]["disk_bytes"] = folder_weights_bytes(folders[name])
        if name in runs:
            results[name]["train_seconds"] = runs[name]["seconds"]
    if "train_seconds" in teacher_info:
        results["teacher"]["train_seconds"] = teacher_info["train_seconds"]
    ensemble = {}
    if extras:
        extra_logits = [predict_logits(e.model, splits.test, cfg.teacher.batch_size)[:, e.order] for e in extras]
        ensemble = {"teachers": teacher_results(cfg, str(teacher_dir), [test_logits["teacher"]] + extra_logits,
                                                splits.test.labels, data.label_names)}

    summary = {
        "task": cfg.task,
        "dataset": cfg.data.dataset or cfg.data.train,
        "label_names": data.label_names,
        "sizes": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test),
                  "unlabeled": len(splits.unlabeled) if splits.unlabeled else 0,
                  "augmented": len(augmented) if augmented is not None else 0},
        "teacher": {"path": str(teacher_dir), **teacher_info},
        "student_config": dataclasses.asdict(cfg.student),
        "construction": construction,
        "loss": dataclasses.asdict(cfg.loss),
        "results": results,
        "runs": {k: {kk: v for kk, v in r.items() if kk != "history"} for k, r in runs.items()},
        "wall_seconds": time.perf_counter() - started,
        **ensemble,
        **({"sweep": sweep} if sweep else {}),
    }
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir, summary)
    mark_finished(run_dir, "report", ["summary.json"], {})
    return summary


def task_vocabulary(tokenizer, data) -> list[int]:
    """Sorted teacher ids kept by student.vocab 'task': special tokens and the train, unlabelled and validation text's."""
    kept: set[int] = set()
    for split in (data.train, data.unlabeled, data.validation):
        if split is not None:
            kept.update(task_token_ids(tokenizer, split.texts, split.pairs))
    return sorted(kept)


@dataclasses.dataclass
class StudentData:
    train: Encoded
    validation: Encoded
    test: Encoded
    unlabeled: Encoded | None
    augmented: Encoded | None


def student_splits(splits: EncodedSplits, augmented: Encoded | None, student_tokenizer, data, max_length: int,
                   kept_ids: list[int] | None, teacher_vocab_size: int) -> StudentData:
    """The splits in the student's token ids. With the teacher's vocabulary these are the teacher's splits.

    With a pruned vocabulary, the training parts are the teacher's ids remapped (exactly what the pruned
    tokenizer gives on that text, checked here), carrying the teacher's ids for the live teacher; validation
    and test are the student's own tokenisation of the raw text, as it will be served.
    """
    if kept_ids is None:
        return StudentData(splits.train, splits.validation, splits.test, splits.unlabeled, augmented)
    own = encode_splits(student_tokenizer, data, max_length, None)
    mapping = id_map(kept_ids, teacher_vocab_size, student_tokenizer.unk_token_id)
    pad = own.train.pad_id
    train, unlabeled = remap_encoded(splits.train, mapping, pad), remap_encoded(splits.unlabeled, mapping, pad)
    check_same_segmentation(own.train.input_ids, train.input_ids, "train")
    if unlabeled is not None:
        check_same_segmentation(own.unlabeled.input_ids, unlabeled.input_ids, "unlabeled")
    return StudentData(train, own.validation, own.test, unlabeled, remap_encoded(augmented, mapping, pad))


def student_objective(cfg: RunConfig, student: torch.nn.Module, teacher: torch.nn.Module):
    """The distillation objective and its extra trained module (projections; None without matching).

    Intermediate matching is resolved and checked here, at start-up, before any training.
    """
    if not uses_intermediate(cfg.loss):
        return classification_objective(cfg.loss), None
    matches = resolve_layer_map(cfg.loss, student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    check_models(cfg.loss, student, teacher)
    if cfg.loss.attention_weight > 0:
        use_eager_attention(student)
        use_eager_attention(teacher)
    torch.manual_seed(cfg.train.seed)
    projections = build_projections(cfg.loss, matches, student, teacher)
    log.info("intermediate matching: layers %s (student, teacher); %d projection(s), outside the student",
             [(m.student_layer, m.teacher_layer) for m in matches], len(projections.maps))
    extra = projections if len(projections.maps) else None
    return classification_objective(cfg.loss, teacher, matches, projections), extra


def teacher_scores(run_dir: Path, teacher: torch.nn.Module, parts: dict[str, Encoded | None], order: list[int],
                   batch_size: int, resume: bool, teacher_dir: Path, max_length: int,
                   extras: list[ExtraTeacher] = (), precision: str = "no") -> tuple[dict[str, torch.Tensor], float]:
    """Phase 1: the teacher's logits ([N, C], in the data's label order) for each part, and the seconds it took.

    Extra teachers' logits come under '<part>@1', '<part>@2', ... The main process scores (or, resuming,
    reads the saved scores) and shares them with the others. Scoring goes through the cross-run cache
    (`textdistill.cache`) under `cache_root()/scores`: a sweep over students, or a rerun, pays for each
    teacher once. `precision` 'bf16' scores under bfloat16 autocast (about 2.3x faster on a CPU with
    native bf16; docs/speed.md).
    """
    parts = {k: v for k, v in parts.items() if v is not None}
    teachers = [(teacher, Path(teacher_dir), order)] + [(e.model, e.path, e.order) for e in extras]
    names = [(i, k, k if i == 0 else f"{k}@{i}") for i in range(len(teachers)) for k in parts]
    done = finished_phase(run_dir, "teacher_scores") if resume and is_main() else None
    started = time.perf_counter()
    if not is_main():
        scores = {name: torch.empty(len(parts[k]), len(order)) for _, k, name in names}
    elif done is not None:
        scores = load_file(str(run_dir / SCORES))
    else:
        digests = [teacher_folder_digest(folder) for _, folder, _ in teachers]
        scores = {}
        for i, k, name in names:
            model, _, model_order = teachers[i]
            logits = cached_teacher_logits(model, parts[k], batch_size, digests[i], max_length, precision)
            scores[name] = logits[:, model_order].contiguous()
        atomic_write(run_dir / SCORES, lambda tmp: save_file(scores, str(tmp)))
        mark_finished(run_dir, "teacher_scores", [SCORES], {"seconds": time.perf_counter() - started})
    seconds = done["seconds"] if done is not None else time.perf_counter() - started
    return {name: share_from_main(scores[name]) for _, _, name in names}, seconds  # same order on every process


def teacher_folder_digest(folder: Path) -> str:
    """sha256 over the names and contents of a model folder's weight, config and tokenizer files."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in (".json", ".txt", ".safetensors", ".bin", ".model"):
            h.update(f.name.encode())
            h.update(file_digest(f).encode())
    return h.hexdigest()


def cached_teacher_logits(teacher: torch.nn.Module, part: Encoded, batch_size: int, teacher_digest: str,
                          max_length: int | None, precision: str = "no", backend: str = "auto") -> torch.Tensor:
    """[N, C] teacher logits (the teacher's own label order) from the cross-run cache, scoring what is missing.

    Keyed by the teacher folder (weights, config, tokenizer), the token ids, max_length, the scoring
    precision and backend; the build goes in length-sorted chunks of a few batches, each one saved, so an
    interrupted build resumes, with a progress bar on a terminal. `backend` 'auto' scores float32 on a CPU
    through ONNX Runtime (`models/onnx_teacher.py`; PyTorch if its check fails), else PyTorch; 'pytorch' or
    'onnxruntime' force one.
    """
    n_labels = teacher.config.num_labels
    lengths = np.asarray(part.lengths, dtype=np.int64)
    settings = {"max_length": max_length, "labels": n_labels}
    if precision != "no":  # float32 keys stay as they were, so existing caches remain valid
        settings["precision"] = precision
    if backend not in ("auto", "pytorch", "onnxruntime"):
        raise ValueError(f"backend must be 'auto', 'pytorch' or 'onnxruntime', not {backend!r}")
    if backend == "auto":
        backend = scoring_backend(precision, next(teacher.parameters()).device)
    session = onnx_teacher_session(teacher, teacher_digest) if backend == "onnxruntime" else None
    if session is not None:  # float32 too, but other kernels (logits differ at 1e-6): never the same entry
        settings["backend"] = "onnxruntime"
    key = cache_key("classification-logits", teacher_digest, settings,
                    lengths, np.asarray([i for ids in part.input_ids for i in ids], dtype=np.int64),
                    np.asarray([i for ids in (part.token_type_ids or []) for i in ids], dtype=np.int64))
    chunks = [sum(c, []) for c in _chunks(sequential_batches(part.lengths, batch_size), 4)]

    def score(index: list[int]) -> dict[str, torch.Tensor]:
        if session is not None:
            return {"logits": onnx_logits(session, subset(part, index), batch_size)}
        return {"logits": predict_logits(teacher, subset(part, index), batch_size, precision=precision)}

    # a bar on terminals only (tqdm's disable=None); logs and CI keep the one-line summary below
    with tqdm(total=len(part), desc="teacher scores", unit="ex", disable=None, leave=False, mininterval=1.0) as bar:
        arrays, info = cached_outputs(cache_root() / "scores" / key[:32], key, len(part),
                                      {"logits": Field((n_labels,))}, score, chunks, progress=bar.update)
    log.info("teacher scores: %s (%d examples scored now)", "from the cache" if info["cached"] else "computed",
             info["computed"])
    return torch.from_numpy(np.array(arrays["logits"]))


def subset(part: Encoded, index: list[int]) -> Encoded:
    """The examples `index` of a split, without teacher logits."""
    return Encoded(input_ids=[part.input_ids[i] for i in index],
                   token_type_ids=[part.token_type_ids[i] for i in index] if part.token_type_ids else None,
                   labels=part.labels[index], lengths=[part.lengths[i] for i in index], pad_id=part.pad_id)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def trained_phase(run_dir: Path, name: str, model: torch.nn.Module, tokenizer, resume: bool, cfg: RunConfig,
                  run_training) -> tuple[torch.nn.Module, dict]:
    """Phases 2 and 3: `run_training()` trains `model` in place, then it is saved to `run_dir/name`.

    Resuming a run in which this phase had finished loads the saved model and its result instead.
    """
    done = finished_phase(run_dir, name) if resume else None
    if done is not None:
        log.info("%s: already trained, loading %s", name, run_dir / name)
        return load_classifier(run_dir / name, name, trust_remote_code=cfg.trust_remote_code), done
    result: TrainResult = run_training()
    info = dataclasses.asdict(result)
    if is_main():
        save_model(model, tokenizer, run_dir / name)
        mark_finished(run_dir, name, [f"{name}/model.safetensors"], info)
        remove_checkpoints(run_dir / "checkpoints", name)  # the saved model replaces them
    wait_for_everyone()
    return model, info


def _digest_encoded(data: Encoded | None) -> str | None:
    """sha256 of a tokenised split's token ids and labels."""
    if data is None:
        return None
    h = hashlib.sha256()
    h.update(np.asarray(data.lengths, dtype=np.int64).tobytes())
    h.update(np.asarray([i for ids in data.input_ids for i in ids], dtype=np.int64).tobytes())
    h.update(data.labels.numpy().tobytes())
    return h.hexdigest()


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().numpy().tobytes())
    return h.hexdigest()
