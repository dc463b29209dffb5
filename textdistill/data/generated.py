"""Text written by a causal LM in the style of the training text, for the teacher to label.

A transfer set needs in-domain text. Where the user has no unlabelled text of their own, a small causal LM
(the built-in SmolLM2-135M-Instruct, or any causal-LM folder in `data.generator`) writes some: each prompt
is `PROMPT_EXAMPLES` training texts of one class, one per line after "- ", and ends with "-"; the model
continues one more line. The class of prompt `i` is `i mod (number of classes)`, so the written text leans
on every class alike, the rare ones included. The class is never a target: the teacher labels the
written texts like any unlabelled text (soft targets only).

Only training texts go into prompts (never validation or test). A written text that is empty or a copy of
a training text, or repeats one written before, is dropped.

The texts are written once and kept in the cross-run cache (`textdistill.cache`): token ids per prompt,
under a key of the generator's folder (weights, config, tokenizer), the prompt pool, the count and the
sampling settings, so runs and seeds share them, and an interrupted run resumes with the batches already
written. Each batch samples from its own seed, so a resumed build writes what an uninterrupted one would.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from textdistill.cache import Field, cache_key, cache_root, cached_outputs
from textdistill.data.labelled import TextSplit
from textdistill.errors import TextDistillError
from textdistill.hashing import folder_digest
from textdistill.models.loading import refuse_custom_code, resolve_model_dir
from textdistill.precision import resolve_precision

log = logging.getLogger("textdistill")

PROMPT_EXAMPLES = 4  # training texts in each prompt
BATCH = 32  # prompts written together
TOP_P = 0.95  # nucleus sampling, temperature 1
CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel")  # class names of models that write text
VERSION = 1  # in the cache key: a change of the prompt or the filtering writes new texts


def generator_folder(setting: str) -> Path:
    """The causal LM that writes: the built-in SmolLM2 or a model folder."""
    if setting == "builtin":
        from textdistill.models.builtin_lm import smollm2_path

        return Path(smollm2_path())
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig

    folder = resolve_model_dir(setting, "data.generator")
    refuse_custom_code(folder, "data.generator", trust_remote_code=False)
    config = AutoConfig.from_pretrained(folder)
    heads = config.architectures or []  # the classes it was saved from; a classifier's head cannot write
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING or not all(a.endswith(CAUSAL_HEADS) for a in heads):
        raise TextDistillError(f"data.generator: {setting!r} holds a {config.model_type!r} model "
                               f"({', '.join(heads) or 'no head'}), which cannot write text; give a causal LM "
                               "(GPT-2, Llama, SmolLM2, ...) or 'builtin'")
    return folder


def prompt_lines(train: TextSplit, count: int, seed: int, max_chars: int) -> list[list[str]]:
    """For prompt i: PROMPT_EXAMPLES training texts of class i mod classes (sorted), each cut to `max_chars`
    and on one line; a pure function of (train, count, seed)."""
    by_class: dict[str, list[str]] = {}
    for text, label in zip(train.texts, train.labels):
        line = " ".join(text.split())[:max_chars]
        if line:
            by_class.setdefault(label, []).append(line)
    classes = sorted(by_class)
    prompts = []
    for i in range(count):
        pool = by_class[classes[i % len(classes)]]
        rng = random.Random(f"{seed}:{i}")
        prompts.append(rng.sample(pool, min(PROMPT_EXAMPLES, len(pool))))
    return prompts


def prompt_text(lines: list[str]) -> str:
    return "".join(f"- {line}\n" for line in lines) + "-"


def line_end_ids(tokenizer) -> list[int]:
    """Every token whose text holds a line break (the model stops at the end of its line), and end-of-text."""
    ends = {i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])}
    if tokenizer.eos_token_id is not None:
        ends.add(tokenizer.eos_token_id)
    return sorted(ends)


def written_texts(ids: list[list[int]], tokenizer, train: TextSplit) -> list[str]:
    """The written lines as text, without empty ones, copies of training texts and repeats."""
    seen = {" ".join(t.split()) for t in train.texts}
    texts = []
    for row in ids:
        text = tokenizer.decode([i for i in row if i >= 0], skip_special_tokens=True)
        text = " ".join(text.split("\n")[0].split())
        if text and text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def generate_texts(train: TextSplit, count: int, generator: str, max_new_tokens: int, seed: int,
                   precision: str = "auto", show_progress: bool = True) -> tuple[list[str], dict]:
    """`count` prompts' worth of written text (fewer texts after filtering), from the cache or written now, and
    {prompts, texts, writer, cached, seconds} for the run's summary."""
    if train.labels is None:
        raise TextDistillError("data.generated_texts needs labelled training text to take its prompts from")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = generator_folder(generator)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TextDistillError(f"data.generator: the tokenizer of {str(folder)!r} has neither a padding nor an "
                               "end-of-text token; set one (tokenizer.pad_token) and save it, or use 'builtin'")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32
    prompts = prompt_lines(train, count, seed, max_chars=8 * max_new_tokens)
    key = cache_key("generated-texts", VERSION, folder_digest(folder), prompts, max_new_tokens, TOP_P, seed, str(dtype))
    started, model, bar = time.perf_counter(), None, None
    ends = line_end_ids(tokenizer)

    def write(index: list[int]) -> dict[str, torch.Tensor]:
        nonlocal model, bar
        if model is None:
            log.info("writing %d texts with %s on %s (%s), once; later runs read them from the cache", count,
                     folder.name, device, str(dtype).removeprefix("torch."))
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
            bar = tqdm(total=count, desc="writing texts", unit="text", disable=not show_progress)
        enc = tokenizer([prompt_text(prompts[i]) for i in index], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        with torch.random.fork_rng(devices=[device] if device != "cpu" else []), torch.inference_mode():
            torch.manual_seed(int(cache_key(seed, index)[:8], 16))  # the batch's own seed: a resume writes the same
            out = model.generate(**enc, do_sample=True, top_p=TOP_P, temperature=1.0, max_new_tokens=max_new_tokens,
                                 eos_token_id=ends, pad_token_id=pad)
        new = out[:, enc["input_ids"].shape[1]:].cpu()
        rows = torch.full((len(index), max_new_tokens), -1, dtype=torch.int32)
        for r, seq in enumerate(new):
            keep = seq.tolist()
            for j, token in enumerate(keep):  # up to and including the first end token
                if token in ends:
                    keep = keep[: j + 1]
                    break
            rows[r, : len(keep)] = torch.tensor(keep, dtype=torch.int32)
        bar.update(len(index))
        return {"ids": rows}

    arrays, info = cached_outputs(cache_root() / "generated" / key[:20], key, count,
                                  {"ids": Field((max_new_tokens,), "int32")}, write,
                                  [list(range(i, min(i + BATCH, count))) for i in range(0, count, BATCH)])
    if bar is not None:
        bar.close()
    texts = written_texts(arrays["ids"].tolist(), tokenizer, train)
    log.info("written text: %d of %d prompts kept (%s)", len(texts), count,
             "cached" if info["cached"] else f"written now by {folder.name}")
    writer = "SmolLM2-135M-Instruct (built in)" if generator == "builtin" else str(folder)
    return texts, {"prompts": count, "texts": len(texts), "writer": writer, "cached": info["cached"],
                   "seconds": time.perf_counter() - started}
