"""Generation data: reading prompt/response, plain-text and parallel corpora, and tokenising them once.

Every example is a (prompt, response) pair of strings; plain text has an empty prompt and parallel text
is (source, target). A causal-LM example is the prompt's tokens followed by the response's, with labels
-100 on the prompt so that the loss is on response tokens only; a seq2seq example is the source (encoder)
and the target (decoder). `TokenData.collate` returns aligned tensors: `targets[b, t]` is the token the
model should predict at logit position t (-100 where nothing is predicted), the same for both tasks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from textdistill.config import DataConfig
from textdistill.data.batching import pad_rows
from textdistill.errors import TextDistillError
from textdistill.losses import IGNORE_INDEX

log = logging.getLogger("textdistill")
Pair = tuple[str, str]


@dataclass
class GenerationData:
    """Splits of (prompt, response) pairs; `kind` is 'text', 'prompt_response' or 'parallel'."""

    train: list[Pair]
    validation: list[Pair]
    test: list[Pair]
    kind: str
    name: str


def load_generation_data(cfg: DataConfig) -> GenerationData:
    if cfg.dataset is not None:
        from textdistill.data import bible  # the data engineer's module; imported only when used

        if cfg.dataset == "bible_en":
            pairs, kind = [("", v) for v in bible.english_verses()], "text"
        else:
            pairs, kind = [tuple(p) for p in bible.parallel_verses()], "parallel"
        name = cfg.dataset
    else:
        pairs, kind = read_pairs(Path(cfg.train), "data.train")
        name = cfg.train
    pairs = [(cfg.source_prefix + p if kind != "text" else p, r) for p, r in pairs]
    rng = np.random.default_rng(cfg.split_seed)
    order = rng.permutation(len(pairs)).tolist()
    held = {}
    for split, frac in (("validation", cfg.validation_fraction), ("test", cfg.test_fraction)):
        path = getattr(cfg, split)
        if path is not None:
            held[split] = [(cfg.source_prefix + p if kind != "text" else p, r)
                           for p, r in read_pairs(Path(path), f"data.{split}")[0]]
        else:
            n = max(1, round(frac * len(pairs)))
            held[split] = [pairs[i] for i in order[:n]]
            order = order[n:]
    train = [pairs[i] for i in sorted(order)]
    if cfg.max_train_examples is not None:
        train = train[: cfg.max_train_examples]
    if len(train) < 2:
        raise TextDistillError(f"{name}: only {len(train)} training example(s) after the split; give more data")
    cap = cfg.max_eval_examples
    return GenerationData(train, held["validation"][:cap], held["test"][:cap], kind, name)


def read_pairs(path: Path, option: str) -> tuple[list[Pair], str]:
    """(pairs, kind) from .txt (one text a line), .tsv (source<TAB>target) or .jsonl (prompt/response,
    source/target or text keys)."""
    if not path.is_file():
        raise TextDistillError(f"{option}: {str(path)!r} does not exist; check the path")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [("", line.strip()) for line in lines], "text"
    if suffix == ".tsv":
        pairs = []
        for n, line in enumerate(lines, 1):
            parts = line.split("\t")
            if len(parts) != 2:
                raise TextDistillError(f"{option}: line {n} of {str(path)!r} has {len(parts)} tab-separated "
                                       "fields; a parallel TSV has two: source<TAB>target")
            pairs.append((parts[0].strip(), parts[1].strip()))
        return pairs, "parallel"
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise TextDistillError(f"{option}: line {n} of {str(path)!r} is not JSON") from None
        for keys, kind in ((("prompt", "response"), "prompt_response"), (("source", "target"), "parallel")):
            if all(isinstance(r, dict) and keys[0] in r and keys[1] in r for r in rows):
                return [(str(r[keys[0]]), str(r[keys[1]])) for r in rows], kind
        if all(isinstance(r, dict) and "text" in r for r in rows):
            return [("", str(r["text"])) for r in rows], "text"
        raise TextDistillError(f"{option}: every line of {str(path)!r} needs the keys prompt and response, source "
                               "and target, or text")
    raise TextDistillError(f"{option}: {str(path)!r} has an unknown extension; use .jsonl, .tsv or .txt")


@dataclass
class TokenData:
    """Tokenised examples for the training loop (`__len__`, `lengths`, `collate`).

    Causal LM: `input_ids[i]` is prompt + response, `labels[i]` the same ids with -100 on the prompt.
    Seq2seq: `input_ids[i]` is the source, `labels[i]` the target. `teacher_topk` (optional) holds the
    cached top-k teacher triple per example, `[N, T, k]`, aligned with logit positions.
    """

    task: str
    input_ids: list[list[int]]
    labels: list[list[int]]
    prompt_lengths: list[int]
    pad_id: int
    decoder_start_id: int | None = None
    teacher_topk: dict[str, np.ndarray] | None = None
    lengths: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.lengths:
            self.lengths = [len(a) + (len(b) if self.task == "seq2seq" else 0)
                            for a, b in zip(self.input_ids, self.labels)]

    def __len__(self) -> int:
        return len(self.input_ids)

    def target_length(self, i: int) -> int:
        """Logit positions of example i (the width of its `targets` row)."""
        return len(self.labels[i]) if self.task == "seq2seq" else len(self.input_ids[i])

    def collate(self, index: list[int]) -> dict[str, torch.Tensor]:
        batch = {"prompt_length": torch.tensor([self.prompt_lengths[i] for i in index])}
        if self.task == "causal_lm":
            batch["input_ids"], batch["attention_mask"] = pad_rows([self.input_ids[i] for i in index], self.pad_id)
            labels, _ = pad_rows([self.labels[i] for i in index], IGNORE_INDEX)
            # logit t predicts token t + 1
            batch["targets"] = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)], 1)  # [B, L]
        else:
            batch["input_ids"], batch["attention_mask"] = pad_rows([self.input_ids[i] for i in index], self.pad_id)
            targets, _ = pad_rows([self.labels[i] for i in index], IGNORE_INDEX)
            starts = torch.full_like(targets[:, :1], self.decoder_start_id)
            decoder = torch.cat([starts, targets[:, :-1]], 1)  # [B, T] the target shifted right
            batch["decoder_input_ids"] = decoder.masked_fill(decoder == IGNORE_INDEX, self.pad_id)
            batch["decoder_attention_mask"] = torch.cat([torch.ones_like(starts), (targets[:, :-1] != IGNORE_INDEX)
                                                         .long()], 1)
            batch["targets"] = targets  # [B, T]
        if self.teacher_topk is not None:
            width = batch["targets"].shape[1]
            for name, array in self.teacher_topk.items():
                batch[f"teacher_{name}"] = torch.from_numpy(np.stack([array[i, :width] for i in index]))
        return batch


def encode_pairs(tokenizer, pairs: list[Pair], task: str, cfg: DataConfig,
                 decoder_start_id: int | None = None) -> TokenData:
    """Tokenise once: causal LM (prompt + response, chat template when the tokenizer has one and
    `cfg.chat_template`) or seq2seq (source, target ending with EOS)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TextDistillError("the tokenizer has neither a pad nor an EOS token; add one to its folder")
    inputs, labels, prompts = [], [], []
    truncated = 0
    for prompt, response in pairs:
        if task == "seq2seq":
            src = tokenizer(prompt, add_special_tokens=True)["input_ids"]
            tgt = _with_eos(tokenizer(text_target=response, add_special_tokens=True)["input_ids"], tokenizer)
            truncated += len(src) > cfg.max_length or len(tgt) > cfg.max_target_length
            inputs.append(src[: cfg.max_length])
            labels.append(_with_eos(tgt[: cfg.max_target_length - 1], tokenizer))
            prompts.append(len(inputs[-1]))
            continue
        p_ids, r_ids = causal_parts(tokenizer, prompt, response, cfg.chat_template)
        budget = cfg.max_length
        if len(p_ids) > budget // 2 and len(p_ids) + len(r_ids) > budget:
            p_ids = p_ids[-(budget // 2):]  # keep the prompt's end, next to the response
        truncated += len(p_ids) + len(r_ids) > budget
        r_ids = r_ids[: budget - len(p_ids)]
        inputs.append(p_ids + r_ids)
        labels.append([IGNORE_INDEX] * len(p_ids) + r_ids)
        prompts.append(len(p_ids))
    if truncated:
        log.warning("%d of %d examples were truncated to data.max_length / max_target_length",
                    truncated, len(pairs))
    return TokenData(task, inputs, labels, prompts, pad, decoder_start_id)


def _with_eos(ids: list[int], tokenizer) -> list[int]:
    eos = tokenizer.eos_token_id
    return ids if eos is None or (ids and ids[-1] == eos) else ids + [eos]


def causal_parts(tokenizer, prompt: str, response: str, chat_template: bool = True) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) of one causal-LM example; the response ends with EOS.

    With a chat template the prompt is the user turn plus the assistant header (add_generation_prompt) and
    the response is the rest of the rendered conversation (the assistant text and its end-of-turn).
    Plain text (empty prompt) is never templated: it is a corpus, not a conversation.
    """
    if prompt and chat_template and getattr(tokenizer, "chat_template", None):
        user = [{"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
        if full.startswith(head):
            return (tokenizer(head, add_special_tokens=False)["input_ids"],
                    tokenizer(full[len(head):], add_special_tokens=False)["input_ids"])
        log.warning("the chat template does not render the prompt as a prefix; using plain text")
    p_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt else []
    if not prompt and tokenizer.bos_token_id is not None:
        p_ids = tokenizer("", add_special_tokens=True)["input_ids"]  # BOS where the tokenizer adds one
    r_ids = tokenizer((" " if prompt else "") + response, add_special_tokens=False)["input_ids"]
    return p_ids, _with_eos(r_ids, tokenizer)
