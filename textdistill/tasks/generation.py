"""Generation: causal language models (`task: causal_lm`) and encoder-decoders (`task: seq2seq`).

What these tasks contribute to the run: prompt/response, plain-text or parallel data (or the built-in
Bible corpora); a teacher from a folder, the built-in SmolLM2-135M-Instruct (causal LM) or an
encoder-decoder trained here (`pipeline/seq2seq_teacher.py`); a student made of a subset of the teacher's
layers; teacher signals served through the cache (sequence-KD targets, the top-k teacher); token-level
objectives (`training/token_objectives.py`); perplexity, token agreement, BLEU/chrF or ROUGE-L and greedy
decoding speed.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from textdistill.cache import Field, cache_key
from textdistill.config import RunConfig, TrainConfig, to_dict
from textdistill.data.batching import concat, sequential_batches
from textdistill.data.pairs import GenerationData, TokenData, encode_pairs, load_generation_data
from textdistill.errors import TextDistillError
from textdistill.evaluation import generative, text_metrics
from textdistill.hashing import content_digest, folder_digest
from textdistill.losses import IGNORE_INDEX, topk_with_leftover
from textdistill.models.inputs import logits_of, prompt_lengths
from textdistill.models.layers import default_layers, keep_layers, layer_count, shrunk
from textdistill.models.loading import load_generation_model, load_tokenizer, resolve_model_dir, shared_vocabulary
from textdistill.pipeline.signal import Signal, SignalServer
from textdistill.tasks.base import Prepared, Teacher, Training
from textdistill.training.distributed import is_main, wait_for_everyone
from textdistill.training.loop import total_steps
from textdistill.training.online import online_training
from textdistill.training.token_objectives import (cached_topk_objective, count_target_tokens, live_teacher_objective,
                                                   on_policy_objective, reference_objective, student_samples,
                                                   token_positions)

log = logging.getLogger("textdistill")


@dataclasses.dataclass
class Splits:
    data: GenerationData
    train: TokenData
    validation: TokenData
    test: TokenData
    shared: int  # token ids teacher and student share: logits are compared on [0, shared)


class GenerationTask:
    def __init__(self, name: str):
        self.name = name

    def selection_metric(self, train: TrainConfig) -> str:
        return "neg_nll"  # validation NLL per token, negated (`training`'s evaluate)

    def count(self, batch) -> int:
        return count_target_tokens(batch)

    def load_data(self, cfg: RunConfig) -> GenerationData:
        return load_generation_data(cfg.data)

    def load_teacher(self, cfg: RunConfig, data: GenerationData) -> Teacher:
        folder, info = teacher_folder(cfg, data)
        tokenizer = load_tokenizer(folder, "teacher", cfg.trust_remote_code)
        model = load_generation_model(folder, self.name, "teacher.path", cfg.trust_remote_code)
        model.requires_grad_(False)  # frozen: scored without gradients, never updated
        return Teacher(folder, info, model, tokenizer)

    def build_student(self, cfg: RunConfig, data: GenerationData, teacher: Teacher) -> Prepared:
        student = build_student(cfg, teacher.model)
        tokenizer = teacher.tokenizer
        student_tokenizer = tokenizer
        if cfg.student.init == "pretrained":
            student_tokenizer = load_tokenizer(Path(cfg.student.path), "student.path", cfg.trust_remote_code)
        shared = shared_vocabulary(tokenizer, student_tokenizer, teacher.model, student)
        check_positions(cfg, teacher.model, student)
        start_id = teacher.model.config.decoder_start_token_id if self.name == "seq2seq" else None
        splits = {name: encode_pairs(tokenizer, getattr(data, name), self.name, cfg.data, start_id, name)
                  for name in ("train", "validation", "test")}
        summary = {"data_kind": data.kind, "shared_vocabulary": shared,
                   "student_config": {**to_dict(cfg.student), "layers": student_layers(cfg, teacher.model)},
                   "generation": to_dict(cfg.generation)}
        return Prepared(student, student_tokenizer, lambda seed=cfg.train.seed: build_student(cfg, teacher.model, seed),
                        Splits(data, splits["train"], splits["validation"], splits["test"], shared), summary)

    def training(self, cfg: RunConfig, prepared: Prepared, teacher: Teacher, serve: SignalServer) -> Training:
        s: Splits = prepared.data
        g, loss = cfg.generation, cfg.loss
        digest = folder_digest(teacher.folder)
        train_set = s.train
        if g.sequence_kd != "off":
            generated = sequence_kd_data(serve, teacher.model, s.train, cfg, digest)
            train_set = concat(s.train, generated) if g.with_references else generated
        if g.topk:  # a copy: the baseline trains on the references without teacher tensors
            train_set = dataclasses.replace(train_set, teacher_topk=serve(
                topk_signal(teacher.model, train_set, g.topk, loss.temperature, s.shared, digest,
                            cfg.teacher.batch_size)))
        online = None
        if cfg.online.mode != "off":  # the teacher (or peers) trained in the loop, scored live: nothing cached
            online = online_training(cfg, teacher.model,
                                     lambda k: build_student(cfg, teacher.model, cfg.train.seed + k),
                                     token_positions, token_positions, s.shared)
            objective = online.objective
        elif loss.beta == 0 and not loss.beta_end:
            objective = reference_objective(loss)
        elif g.topk:
            objective = cached_topk_objective(loss, s.shared)
        else:
            objective = live_teacher_objective(loss, teacher.model, s.shared, g.chunk_size)
        if g.on_policy_fraction > 0:
            objective = on_policy_objective(loss, g, teacher.model, s.shared, objective,
                                            total_steps(len(train_set), cfg.train), self.name, train_set.pad_id,
                                            teacher.tokenizer.eos_token_id)

        def evaluate(m):
            nll, n = generative.heldout_nll(m, s.validation, cfg.teacher.batch_size)
            return {"neg_nll": -nll / max(n, 1), "perplexity": text_metrics.perplexity(nll, n)}

        sizes = {"train": len(s.train), "train_used": len(train_set), "validation": len(s.validation),
                 "test": len(s.test)}
        identity = {"train": _digest(train_set), "teacher": digest}
        if online is None:
            return Training(train_set, s.train, objective, len(train_set), evaluate, identity,
                            baseline_identity={"train": _digest(s.train)}, sizes=sizes,
                            evaluate_teacher=lambda: evaluate(teacher.model))
        return Training(train_set, s.train, objective, len(train_set), evaluate,
                        {**identity, "online": to_dict(cfg.online)}, {"train": _digest(s.train)}, sizes,
                        extra=online.extra, extra_learning_rates=online.learning_rates,
                        trains_teacher=online.trains_teacher, summary={"online": online.summary},
                        evaluate_teacher=lambda: evaluate(teacher.model))

    def load_model(self, cfg: RunConfig, folder: Path, role: str) -> torch.nn.Module:
        return load_generation_model(folder, self.name, role, cfg.trust_remote_code)

    def probe_batch(self, prepared: Prepared):
        test = prepared.data.test
        return test.collate(list(range(min(4, len(test)))))

    def test_results(self, cfg: RunConfig, models: dict[str, torch.nn.Module], prepared: Prepared,
                     teacher: Teacher) -> tuple[dict[str, dict], dict]:
        s: Splits = prepared.data
        g, batch, test = cfg.generation, cfg.teacher.batch_size, s.test
        refs = generative.references(test, teacher.tokenizer)
        results = {}
        for name, model in models.items():
            model.eval()
            nll, n = generative.heldout_nll(model, test, batch)
            r = {"perplexity": text_metrics.perplexity(nll, n), "nll_per_token": nll / max(n, 1), "test_tokens": n}
            if name != "teacher":
                r["token_agreement"] = generative.token_agreement(model, models["teacher"], test, batch, s.shared)
            if s.data.kind in ("parallel", "prompt_response"):
                hyps = generative.greedy_decode(model, test, teacher.tokenizer, g.max_new_tokens, batch)
                r.update(generative.text_scores(hyps, refs, s.data.kind))
                r["distinct_outputs"] = text_metrics.distinct_share(hyps)
                if name == "teacher" and len(hyps) >= 10 and r["distinct_outputs"] < 0.5:
                    log.warning("the teacher writes the same output for many inputs (%.0f%% of its %d test outputs "
                                "are distinct): it has not learned the task, and a student that copies it scores "
                                "as well as it does; train the teacher longer before distilling",
                                100 * r["distinct_outputs"], len(hyps))
                r["examples"] = [{"reference": ref, "output": hyp} for ref, hyp in list(zip(refs, hyps))[:3]]
            results[name] = r
        speed = generative.generation_speed(models, test, g.max_new_tokens, cfg.report.latency_examples,
                                            g.on_policy_prompt_tokens)
        for name in models:
            results[name].update(speed[name])
        return results, {}

    def train_teacher(self, cfg: RunConfig, output: str | Path | None = None, overwrite: bool = False) -> dict:
        """`textdistill teacher`: train the seq2seq teacher of `teacher.path: train` (cached; copied to `output`)."""
        if self.name != "seq2seq" or cfg.teacher.path != "train":
            raise TextDistillError(f"textdistill teacher trains classification teachers and the seq2seq teacher of "
                                   f"teacher.path 'train'; a {self.name} run with teacher.path {cfg.teacher.path!r} "
                                   "uses its teacher as it is")
        from textdistill.pipeline.seq2seq_teacher import trained_seq2seq_teacher

        from textdistill.pipeline.teacher_cache import open_teacher_folder

        data = load_generation_data(cfg.data)
        if output is None:
            folder, info = trained_seq2seq_teacher(cfg, data)
            return {"teacher": str(folder), **info}
        out = Path(output).expanduser()
        with open_teacher_folder(out, overwrite, [cfg.data.train, cfg.data.validation, cfg.data.test]) as target:
            folder, info = trained_seq2seq_teacher(cfg, data)
            if is_main():
                shutil.copytree(folder, target.path, dirs_exist_ok=True)  # into the new folder of ours
        return {"teacher": str(out), **info}


def teacher_folder(cfg: RunConfig, data: GenerationData) -> tuple[Path, dict]:
    """The teacher's folder: given, the built-in SmolLM2 (converted once, by the main process), or trained here."""
    if cfg.teacher.path == "builtin":
        from textdistill.models import builtin_lm

        if is_main():
            builtin_lm.smollm2_path()  # converts the packaged GGUF once; the other processes then find it
        wait_for_everyone()
        return Path(builtin_lm.smollm2_path()), {"base": "SmolLM2-135M-Instruct (built in)"}
    if cfg.teacher.path == "train":
        from textdistill.pipeline.seq2seq_teacher import trained_seq2seq_teacher

        # quiet about truncation: the run tokenises the same splits with this tokenizer next and says it there
        return trained_seq2seq_teacher(cfg, data, warn=False)
    return resolve_model_dir(cfg.teacher.path, "teacher.path"), {}


def student_layers(cfg: RunConfig, teacher: torch.nn.Module) -> dict[str, list[int]] | None:
    """The teacher layers kept, per stack; None for students not made of teacher layers."""
    if cfg.student.init != "teacher_layers":
        return None
    s = cfg.student
    keep = {"decoder": list(s.layers) if s.layers else default_layers(layer_count(teacher, "decoder"))}
    if cfg.task == "seq2seq" and s.encoder_layers is not None:
        keep["encoder"] = list(s.encoder_layers)
    return keep


def build_student(cfg: RunConfig, teacher: torch.nn.Module, seed: int | None = None) -> torch.nn.Module:
    """The student by `student.init`: teacher layers kept, a smaller config (random init by `seed`, default
    train.seed), or a pretrained folder."""
    s = cfg.student
    if s.init == "pretrained":
        return load_generation_model(Path(s.path), cfg.task, "student.path", cfg.trust_remote_code)
    if s.init == "shrink":
        return shrunk(teacher, s.num_layers, s.hidden_size, s.num_heads, s.intermediate_size,
                      cfg.train.seed if seed is None else seed)
    return keep_layers(teacher, student_layers(cfg, teacher))


def check_positions(cfg: RunConfig, *models: torch.nn.Module) -> None:
    d, g = cfg.data, cfg.generation
    need = d.max_length + (g.max_new_tokens if cfg.task == "causal_lm" else 0)
    if cfg.task == "seq2seq":
        need = max(d.max_length, d.max_target_length, g.max_new_tokens + 1)
    for m in models:
        limit = getattr(m.config, "max_position_embeddings", None) or getattr(m.config, "n_positions", None)
        if limit is not None and need > limit:
            raise TextDistillError(
                f"data.max_length / max_target_length / generation.max_new_tokens need {need} positions but the "
                f"model has {limit}; lower them")


def sequence_kd_data(serve: SignalServer, teacher, data: TokenData, cfg: RunConfig, teacher_digest: str) -> TokenData:
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
        out = student_samples(teacher, batch, g, data.task, pad, eos, do_sample=g.sequence_kd == "sample",
                              num_beams=settings["num_beams"])
        tokens = torch.full((len(index), width), -1, dtype=torch.int32)
        starts = prompt_lengths(batch, g.on_policy_prompt_tokens) if data.task == "causal_lm" else None
        for b in range(len(index)):
            row = out["targets"][b]
            ids = row[row != IGNORE_INDEX]
            tokens[b, : len(ids)] = ids.to(torch.int32)
            if starts is not None:
                tokens[b, -1] = int(starts[b])  # the prompt length used, kept in the last column
        return {"tokens": tokens}

    arrays = serve(Signal("sequence_kd", key, len(data), {"tokens": Field((width,), "int32")}, generate,
                          sequential_batches(data.lengths, cfg.teacher.batch_size), "sequence-KD targets",
                          "examples generated"))
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


def topk_signal(teacher, data: TokenData, k: int, temperature: float, shared: int, teacher_digest: str,
                batch_size: int) -> Signal:
    """The teacher's top-k log-probs, ids and leftover log-mass at every logit position (`[N, T, k]`,
    `[N, T, k]`, `[N, T]`, T the longest example); memory grows with k, not V."""
    width = max(data.target_length(i) for i in range(len(data)))
    key = cache_key("generation-topk", teacher_digest, {"k": k, "temperature": temperature, "shared": shared,
                                                        "task": data.task},
                    np.asarray(data.lengths), np.asarray([i for ids in data.input_ids for i in ids], dtype=np.int64),
                    np.asarray([i for ids in data.labels for i in ids], dtype=np.int64))

    @torch.inference_mode()
    def score(index: list[int]) -> dict[str, torch.Tensor]:
        batch = data.collate(index)
        logits = logits_of(teacher, batch)[..., :shared]  # [B, T_b, shared]
        top, ids, left = topk_with_leftover(logits, k, temperature)
        pad = width - logits.shape[1]
        return {"top_logprobs": torch.nn.functional.pad(top, (0, 0, 0, pad)),
                "top_ids": torch.nn.functional.pad(ids, (0, 0, 0, pad)).to(torch.int32),
                "leftover": torch.nn.functional.pad(left, (0, pad))}

    fields = {"top_logprobs": Field((width, k)), "top_ids": Field((width, k), "int32"), "leftover": Field((width,))}
    return Signal("topk", key, len(data), fields, score, sequential_batches(data.lengths, batch_size),
                  f"top-{k} teacher")


def _digest(data: TokenData) -> str:
    """What a training set is, for a checkpoint's identity: its inputs and targets."""
    return content_digest(data.input_ids, data.labels)
