"""`distill` for the generation tasks (`task: causal_lm | seq2seq`): teacher, targets, student, baseline, report.

Phases (each finished one leaves a marker, so `--resume` skips it; training phases continue from their
last checkpoint):
1. teacher: a model folder, SmolLM2-135M-Instruct ('builtin', causal LM) or an encoder-decoder trained here
   ('train', seq2seq; `seq2seq_teacher.py`), both cached across runs;
2. teacher signal that is computed once and cached on disk across runs (`textdistill.cache`): the
   sequence-KD targets (`generation.sequence_kd`) and the top-k teacher (`generation.topk`);
3. student: the teacher with fewer layers, trained by the configured objective (`training/generation.py`);
4. baseline: the same student, same initial weights and optimizer steps, cross-entropy on the references;
5. evaluation (perplexity, agreement, BLEU/chrF or ROUGE-L, greedy speed), summary.json, report.md and an
   export check of the student folder (reloaded, same logits).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from textdistill.cache import Field, cache_key, cache_root, cached_outputs
from textdistill.config import RunConfig
from textdistill.data.classification import sequential_batches
from textdistill.data.generation import TokenData, encode_pairs, load_generation_data
from textdistill.errors import TextDistillError
from textdistill.evaluation import generation as gen_eval
from textdistill.evaluation.text_metrics import distinct_share
from textdistill.losses import IGNORE_INDEX, topk_with_leftover
from textdistill.models.generation import (default_student_layers, keep_layers, layer_count, load_generation_model,
                                           shared_vocabulary, shrunk)
from textdistill.models.loading import cap_model_max_length, load_tokenizer, resolve_model_dir
from textdistill.models.students import count_parameters
from textdistill.ownership import OwnedFolder
from textdistill.pipeline.distill import teacher_folder_digest
from textdistill.pipeline.phases import finished_phase, mark_finished
from textdistill.pipeline.runs import (apply_threads, check_sources, folder_weights_bytes, open_run_folder, save_model,
                                       write_json)
from textdistill.report.render import write_report
from textdistill.training import generation as objectives
from textdistill.training.loop import train, total_steps
from textdistill.training.resume import remove_checkpoints

log = logging.getLogger("textdistill")


def run_generation_distill(cfg: RunConfig, overwrite: bool = False, resume: bool = False, *,
                           command: str = "distill", may_replace=None) -> dict:
    """The whole generation recipe; returns the summary that report.md is made from. `command` and
    `may_replace` as in `run_distill`."""
    started = time.perf_counter()
    apply_threads(cfg.train.threads)
    data = load_generation_data(cfg.generation)  # the new config and data are checked before an old run is touched
    check_sources(cfg)
    with open_run_folder(cfg, overwrite, resume, command=command, may_replace=may_replace) as folder:
        return _generation_distill(cfg, folder, data, started, resume)


def _generation_distill(cfg: RunConfig, folder: OwnedFolder, data, started: float, resume: bool) -> dict:
    run_dir = folder.path
    if resume and finished_phase(run_dir, "report") is not None:
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    g, task = cfg.generation, cfg.task

    teacher_dir, teacher_info = resolve_teacher(cfg, data, resume)
    tokenizer = load_tokenizer(teacher_dir, "teacher", cfg.trust_remote_code)
    teacher = load_generation_model(teacher_dir, task, "teacher.path", cfg.trust_remote_code)
    teacher.requires_grad_(False)  # frozen: scored without gradients, never updated
    student = build_generation_student(cfg, teacher)
    student_tokenizer = tokenizer
    if cfg.student.init == "pretrained":
        student_tokenizer = load_tokenizer(Path(cfg.student.path), "student.path", cfg.trust_remote_code)
    shared = shared_vocabulary(tokenizer, student_tokenizer, teacher, student)
    check_positions(cfg, teacher, student)
    start_id = teacher.config.decoder_start_token_id if task == "seq2seq" else None
    splits = {name: encode_pairs(tokenizer, getattr(data, name), task, g, start_id)
              for name in ("train", "validation", "test")}
    digest = teacher_folder_digest(Path(teacher_dir))

    folder.started()  # everything is loaded and checked: the run it replaces (if any) can go
    # Phase 2: the teacher signal computed once, cached on disk across runs.
    train_set = splits["train"]
    if g.sequence_kd != "off":
        generated = sequence_kd_data(teacher, splits["train"], cfg, digest)
        train_set = concat(splits["train"], generated) if g.with_references else generated
    if g.topk:  # a copy: the baseline trains on the references without teacher tensors
        train_set = dataclasses.replace(train_set)
        train_set.teacher_topk = cached_topk(teacher, train_set, g.topk, g.temperature, shared, digest,
                                             cfg.teacher.batch_size)
    objective = student_objective(cfg, teacher, shared, train_set, tokenizer)
    identity = {"train": digest_data(train_set), "teacher": digest}

    def evaluate(m):
        nll, n = gen_eval.heldout_nll(m, splits["validation"], cfg.teacher.batch_size)
        return {"neg_nll": -nll / max(n, 1), "perplexity": math.exp(nll / max(n, 1))}

    models: dict[str, torch.nn.Module] = {"teacher": teacher}
    runs: dict[str, dict] = {}
    models["student"], runs["student"] = trained(
        run_dir, "student", student, student_tokenizer, resume, cfg,
        lambda: train(student, train_set, objective, cfg.train, name="student", run_dir=run_dir, evaluate=evaluate,
                      metric="neg_nll", count=objectives.count_target_tokens, resume=resume, identity=identity))
    if cfg.report.baseline:
        baseline = build_generation_student(cfg, teacher)
        steps = runs["student"]["steps"]
        same_budget = baseline_settings(cfg, len(splits["train"]), steps)
        models["baseline"], runs["baseline"] = trained(
            run_dir, "baseline", baseline, student_tokenizer, resume, cfg,
            lambda: train(baseline, splits["train"], objectives.label_objective(), same_budget, name="baseline",
                          run_dir=run_dir, evaluate=evaluate, metric="neg_nll", count=objectives.count_target_tokens,
                          resume=resume, identity={"train": digest_data(splits["train"])}))

    # Phase 5: evaluation, report, export check.
    results = evaluate_models(cfg, models, splits["test"], tokenizer, data.kind, shared)
    folders = {"teacher": Path(teacher_dir), "student": run_dir / "student", "baseline": run_dir / "baseline"}
    for name, m in models.items():
        results[name]["parameters"] = count_parameters(m)
        results[name]["disk_bytes"] = folder_weights_bytes(folders[name])
        if name in runs:
            results[name]["train_seconds"] = runs[name]["seconds"]
    export = check_export(run_dir / "student", task, models["student"], splits["test"])
    summary = {
        "task": task,
        "dataset": data.name,
        "data_kind": data.kind,
        "sizes": {"train": len(splits["train"]), "train_used": len(train_set), "validation": len(splits["validation"]),
                  "test": len(splits["test"])},
        "teacher": {"path": str(teacher_dir), **teacher_info},
        "student_config": {**dataclasses.asdict(cfg.student), "layers": student_layers(cfg, teacher)},
        "generation": dataclasses.asdict(g),
        "shared_vocabulary": shared,
        "results": results,
        "runs": {k: {kk: v for kk, v in r.items() if kk != "history"} for k, r in runs.items()},
        "export": export,
        "wall_seconds": time.perf_counter() - started,
    }
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir, summary)
    mark_finished(run_dir, "report", ["summary.json"], {})
    return summary


def resolve_teacher(cfg: RunConfig, data, resume: bool) -> tuple[Path, dict]:
    if cfg.teacher.path == "builtin":
        from textdistill.models import builtin_lm  # the data engineer's module; imported only when used

        return Path(builtin_lm.smollm2_path()), {"base": "SmolLM2-135M-Instruct (built in)"}
    if cfg.teacher.path == "train":
        from textdistill.pipeline.seq2seq_teacher import trained_seq2seq_teacher

        return trained_seq2seq_teacher(cfg, data, resume)
    return resolve_model_dir(cfg.teacher.path, "teacher.path"), {}


def student_layers(cfg: RunConfig, teacher: torch.nn.Module) -> dict[str, list[int]] | None:
    """The teacher layers kept, per stack; None for students not made of teacher layers."""
    if cfg.student.init != "teacher_layers":
        return None
    g = cfg.generation
    keep = {"decoder": g.student_layers or default_student_layers(layer_count(teacher, "decoder"))}
    if cfg.task == "seq2seq" and g.student_encoder_layers is not None:
        keep["encoder"] = g.student_encoder_layers
    return keep


def build_generation_student(cfg: RunConfig, teacher: torch.nn.Module) -> torch.nn.Module:
    """The student by `student.init`: teacher layers kept, a smaller config, or a pretrained folder."""
    s = cfg.student
    if s.init == "pretrained":
        return load_generation_model(Path(s.path), cfg.task, "student.path", cfg.trust_remote_code)
    if s.init == "shrink":
        return shrunk(teacher, s.num_layers, s.hidden_size, s.num_heads, s.intermediate_size, cfg.train.seed)
    return keep_layers(teacher, student_layers(cfg, teacher))


def check_positions(cfg: RunConfig, *models: torch.nn.Module) -> None:
    g = cfg.generation
    need = g.max_length + (g.max_new_tokens if cfg.task == "causal_lm" else 0)
    if cfg.task == "seq2seq":
        need = max(g.max_length, g.max_target_length, g.max_new_tokens + 1)
    for m in models:
        limit = getattr(m.config, "max_position_embeddings", None) or getattr(m.config, "n_positions", None)
        if limit is not None and need > limit:
            raise TextDistillError(
                f"generation.max_length / max_target_length / max_new_tokens need {need} positions but the model has "
                f"{limit}; lower them")


def student_objective(cfg: RunConfig, teacher, shared: int, train_set: TokenData, tokenizer):
    """The configured objective: which producer gives the teacher signal, and whether on-policy steps mix in."""
    g = cfg.generation
    if g.kd_weight == 0:
        off = _weighted(objectives.label_objective(), g.ce_weight)
    elif g.topk:
        off = objectives.cached_topk_objective(g, shared)
    else:
        off = objectives.live_teacher_objective(g, teacher, shared)
    if g.on_policy_fraction > 0:
        return objectives.on_policy_objective(g, teacher, shared, off, total_steps(len(train_set), cfg.train),
                                              cfg.task, train_set.pad_id, tokenizer.eos_token_id)
    return off


def _weighted(objective, weight: float):
    def scaled(model, batch, progress=0.0):
        return {k: weight * v for k, v in objective(model, batch, progress).items()}

    return scaled


def baseline_settings(cfg: RunConfig, n_examples: int, steps: int):
    """The student's training settings with exactly its number of optimizer steps on the reference data."""
    per_epoch = total_steps(n_examples, dataclasses.replace(cfg.train, epochs=1.0, max_steps=None))
    return dataclasses.replace(cfg.train, epochs=(steps + 0.5) / per_epoch, max_steps=steps)


def trained(run_dir: Path, name: str, model: torch.nn.Module, tokenizer, resume: bool, cfg: RunConfig,
            run_training) -> tuple[torch.nn.Module, dict]:
    """Train `model` in place and save it to `run_dir/name`; a finished phase is loaded instead."""
    done = finished_phase(run_dir, name) if resume else None
    if done is not None:
        log.info("%s: already trained, loading %s", name, run_dir / name)
        return load_generation_model(run_dir / name, cfg.task, name, cfg.trust_remote_code), done
    info = dataclasses.asdict(run_training())
    save_model(model, tokenizer, run_dir / name)
    mark_finished(run_dir, name, [f"{name}/model.safetensors"], info)
    remove_checkpoints(run_dir / "checkpoints", name)  # the saved model replaces them
    return model, info


def sequence_kd_data(teacher, data: TokenData, cfg: RunConfig, teacher_digest: str) -> TokenData:
    """Kim & Rush (2016) sequence-level KD: the teacher's own outputs for every training prompt/source, made
    once by greedy, beam or sampled decoding and cached across runs under a key of the teacher, the prompts
    and the decoding settings; the student then trains on them as targets."""
    g = cfg.generation
    width = g.max_new_tokens + 1
    settings = {"mode": g.sequence_kd, "num_beams": g.num_beams if g.sequence_kd == "beam" else 1,
                "max_new_tokens": g.max_new_tokens, "task": data.task,
                "seed": cfg.train.seed if g.sequence_kd == "sample" else None,  # greedy and beam ignore it
                "temperature": g.sample_temperature if g.sequence_kd == "sample" else None,
                "prompt_tokens": g.on_policy_prompt_tokens}
    prompts = [ids[:p] for ids, p in zip(data.input_ids, data.prompt_lengths)]
    key = cache_key("sequence-kd", teacher_digest, settings, np.asarray([len(p) for p in data.input_ids]),
                    np.asarray([i for ids in data.input_ids for i in ids], dtype=np.int64),
                    np.asarray([len(p) for p in prompts]))
    pad, eos = data.pad_id, teacher.generation_config.eos_token_id or teacher.config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos  # the first of several end tokens (chat models list two)

    def generate(index: list[int]) -> dict[str, torch.Tensor]:
        torch.manual_seed(cfg.train.seed * 1_000_003 + index[0])  # a sampled target depends on its batch only
        batch = data.collate(index)
        out = objectives.student_samples(teacher, batch, g, data.task, pad, eos,
                                         do_sample=g.sequence_kd == "sample", num_beams=settings["num_beams"])
        tokens = torch.full((len(index), width), -1, dtype=torch.int32)
        starts = objectives.prompt_lengths(batch, g) if data.task == "causal_lm" else None
        for b in range(len(index)):
            row = out["targets"][b]
            ids = row[row != IGNORE_INDEX]
            tokens[b, : len(ids)] = ids.to(torch.int32)
            if starts is not None:
                tokens[b, -1] = int(starts[b])  # the prompt length used, kept in the last column
        return {"tokens": tokens}

    batches = sequential_batches(data.lengths, cfg.teacher.batch_size)
    arrays, info = cached_outputs(cache_root() / "sequence_kd" / key[:32], key, len(data),
                                  {"tokens": Field((width,), "int32")}, generate, batches)
    log.info("sequence-KD targets: %s (%d generated now)", "from the cache" if info["cached"] else "generated",
             info["computed"])
    inputs, labels, plens = [], [], []
    for i in range(len(data)):
        row = np.asarray(arrays["tokens"][i])
        if data.task == "seq2seq":
            ids = [int(t) for t in row if t >= 0]
            inputs.append(data.input_ids[i])
            labels.append(ids or [eos])
            plens.append(data.prompt_lengths[i])
        else:
            n = int(row[-1])
            ids = [int(t) for t in row[:-1] if t >= 0]
            prompt = data.input_ids[i][:n]
            inputs.append(prompt + ids)
            labels.append([IGNORE_INDEX] * n + ids)
            plens.append(n)
    return TokenData(data.task, inputs, labels, plens, data.pad_id, data.decoder_start_id)


def cached_topk(teacher, data: TokenData, k: int, temperature: float, shared: int, teacher_digest: str,
                batch_size: int) -> dict[str, np.ndarray]:
    """The teacher's top-k log-probs, ids and leftover log-mass at every logit position (`[N, T, k]`,
    `[N, T, k]`, `[N, T]`, T the longest example), cached across runs; memory grows with k, not V."""
    width = max(data.target_length(i) for i in range(len(data)))
    key = cache_key("generation-topk", teacher_digest, {"k": k, "temperature": temperature, "shared": shared,
                                                        "task": data.task},
                    np.asarray(data.lengths), np.asarray([i for ids in data.input_ids for i in ids], dtype=np.int64),
                    np.asarray([i for ids in data.labels for i in ids], dtype=np.int64))

    @torch.inference_mode()
    def score(index: list[int]) -> dict[str, torch.Tensor]:
        batch = data.collate(index)
        logits = objectives.logits_of(teacher, batch)[..., :shared]  # [B, T_b, shared]
        top, ids, left = topk_with_leftover(logits, k, temperature)
        pad = width - logits.shape[1]
        return {"top_logprobs": torch.nn.functional.pad(top, (0, 0, 0, pad)),
                "top_ids": torch.nn.functional.pad(ids, (0, 0, 0, pad)).to(torch.int32),
                "leftover": torch.nn.functional.pad(left, (0, pad))}

    fields = {"top_logprobs": Field((width, k)), "top_ids": Field((width, k), "int32"), "leftover": Field((width,))}
    arrays, info = cached_outputs(cache_root() / "topk" / key[:32], key, len(data), fields, score,
                                  sequential_batches(data.lengths, batch_size))
    log.info("top-%d teacher: %s (%d examples scored now)", k, "from the cache" if info["cached"] else "computed",
             info["computed"])
    return dict(arrays)


def concat(a: TokenData, b: TokenData) -> TokenData:
    return TokenData(a.task, a.input_ids + b.input_ids, a.labels + b.labels, a.prompt_lengths + b.prompt_lengths,
                     a.pad_id, a.decoder_start_id)


def digest_data(data: TokenData) -> str:
    h = hashlib.sha256()
    for rows in (data.input_ids, data.labels):
        h.update(np.asarray([len(r) for r in rows], dtype=np.int64).tobytes())
        h.update(np.asarray([i for r in rows for i in r], dtype=np.int64).tobytes())
    return h.hexdigest()


def evaluate_models(cfg: RunConfig, models: dict[str, torch.nn.Module], test: TokenData, tokenizer, kind: str,
                    shared: int) -> dict[str, dict]:
    g, batch = cfg.generation, cfg.teacher.batch_size
    refs = gen_eval.references(test, tokenizer)
    results = {}
    for name, model in models.items():
        model.eval()
        nll, n = gen_eval.heldout_nll(model, test, batch)
        r = {"perplexity": gen_eval.perplexity(nll, n), "nll_per_token": nll / max(n, 1), "test_tokens": n}
        if name != "teacher":
            r["token_agreement"] = gen_eval.token_agreement(model, models["teacher"], test, batch, shared)
        if kind in ("parallel", "prompt_response"):
            hyps = gen_eval.greedy_decode(model, test, tokenizer, g.max_new_tokens, batch)
            r.update(gen_eval.text_scores(hyps, refs, kind))
            r["distinct_outputs"] = distinct_share(hyps)
            if name == "teacher" and len(hyps) >= 10 and r["distinct_outputs"] < 0.5:
                log.warning("the teacher writes the same output for many inputs (%.0f%% of its %d test outputs "
                            "are distinct): it has not learned the task, and a student that copies it scores "
                            "as well as it does; train the teacher longer before distilling",
                            100 * r["distinct_outputs"], len(hyps))
            r["examples"] = [{"reference": ref, "output": hyp} for ref, hyp in list(zip(refs, hyps))[:3]]
        results[name] = r
    speed = gen_eval.generation_speed(models, test, g.max_new_tokens, g.speed_prompts, g.on_policy_prompt_tokens)
    for name in models:
        results[name].update(speed[name])
    return results


@torch.inference_mode()
def check_export(folder: Path, task: str, model: torch.nn.Module, test: TokenData) -> dict:
    """Reload the saved student folder with plain `transformers` and compare its logits on test examples."""
    reloaded = load_generation_model(folder, task, "student export")
    batch = test.collate(list(range(min(4, len(test)))))
    diff = float((objectives.logits_of(model.eval(), batch) - objectives.logits_of(reloaded, batch)).abs().max())
    if diff > 1e-4:
        raise TextDistillError(f"the saved student gives different logits after reloading (max difference {diff:.2e}); "
                               "please report this")
    return {"folder": str(folder), "files": sorted(p.name for p in folder.iterdir()), "max_logit_difference": diff}


PROBES = ["In the beginning God created the heaven and the earth.", "And God said, Let there be light."]


def export_generation(source: Path, out: Path) -> dict:
    """`export` of a generation student: a plain Hugging Face folder with its tokenizer, reloaded with
    `transformers` and checked to give the same logits on probe texts, plus ONNX graphs and their int8
    variants (`generation_onnx.py`), checked against PyTorch's logits and greedy outputs."""
    import json as json_module

    from textdistill.pipeline.generation_onnx import check_generation_onnx, write_generation_onnx

    config = json_module.loads((source / "config.json").read_text(encoding="utf-8"))
    task = "seq2seq" if config.get("is_encoder_decoder") else "causal_lm"
    model = load_generation_model(source, task, "export")
    tokenizer = load_tokenizer(source, "export")
    cap_model_max_length(tokenizer, model)
    save_model(model, tokenizer, out)
    reloaded = load_generation_model(out, task, "export")
    enc = tokenizer(PROBES, return_tensors="pt", padding=True)

    @torch.no_grad()
    def logits(m):
        extra = {}
        if task == "seq2seq":
            start = m.config.decoder_start_token_id
            extra["decoder_input_ids"] = torch.full((len(PROBES), 1), start, dtype=torch.long)
        return m(**enc, **extra).logits

    diff = float((logits(model) - logits(reloaded)).abs().max())
    if diff > 1e-5:
        raise TextDistillError(f"exported model gives different logits (max difference {diff:.2e}); please report this")
    write_generation_onnx(model, task, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, out)
    onnx = check_generation_onnx(model, task, tokenizer, PROBES, out)
    return {"output": str(out), "task": task, "files": sorted(p.name for p in out.iterdir()),
            "max_logit_difference": diff, **onnx}
