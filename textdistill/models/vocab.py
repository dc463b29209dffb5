"""Vocabulary pruning: keep only the token ids the task's text uses, with a tokenizer that still reads raw text.

`task_token_ids` lists the teacher ids that the teacher's tokenizer produces on the task's text (plus the
special tokens); `pruned_tokenizer` is the teacher's tokenizer with only those tokens, renumbered in the
teacher's order, with the same normaliser, pre-tokenizer, post-processor and special tokens.

Why this is exact on the pruning text: WordPiece splits each pre-tokenised word by greedy longest match
from the left. If the kept vocabulary holds every piece the full vocabulary produced for a word, then at
each position the full vocabulary's longest match is kept, and no longer kept match can exist (it would be
in the full vocabulary too), so the split is the same. On the text used for pruning the pruned tokenizer
therefore gives exactly `remap(teacher ids)`. A word never seen falls back to shorter kept pieces, or to
the unknown token when no split into kept pieces exists (WordPiece then maps the whole word to [UNK]).
Only WordPiece tokenizers (BERT, MiniLM, DistilBERT, MPNet, ...) are pruned this way: BPE merges and
Unigram scores do not have this property.

The student trains on its own ids; the teacher keeps reading the teacher's ids (`Encoded.teacher_input_ids`).
"""

from __future__ import annotations

import json

import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from textdistill.data.labelled import Encoded
from textdistill.errors import TextDistillError


def _backend_json(tokenizer: PreTrainedTokenizerBase) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TextDistillError("student.vocab 'task' needs a fast (tokenizers-backed) WordPiece tokenizer, and the "
                               f"teacher's is {type(tokenizer).__name__}; set student.vocab to 'teacher'")
    spec = json.loads(backend.to_str())
    kind = spec.get("model", {}).get("type")
    if kind != "WordPiece":
        raise TextDistillError(f"student.vocab 'task' prunes WordPiece vocabularies only, and the teacher's tokenizer "
                               f"is {kind}; set student.vocab to 'teacher'")
    return spec


def check_prunable(tokenizer: PreTrainedTokenizerBase) -> None:
    """A clear error, before anything is trained, for a tokenizer that `pruned_tokenizer` cannot prune."""
    _backend_json(tokenizer)


def task_token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str], pairs: list[str] | None = None) -> list[int]:
    """Sorted teacher ids: the special tokens plus every id the tokenizer produces on `texts` (untruncated).

    Untruncated, because truncation can cut a word after its first pieces: its later pieces would be
    missing, and WordPiece would then turn the whole word into [UNK] instead of its first pieces.
    """
    check_prunable(tokenizer)
    kept = set(tokenizer.all_special_ids)
    for start in range(0, len(texts), 1000):
        chunk = texts[start : start + 1000]
        out = tokenizer(chunk, pairs[start : start + 1000]) if pairs else tokenizer(chunk)
        for ids in out["input_ids"]:
            kept.update(ids)
    return sorted(kept)


def common_token_ids(tokenizer: PreTrainedTokenizerBase, n: int) -> list[int]:
    """The first `n` multi-character tokens in the vocabulary's own order, special tokens and placeholders such
    as BERT's `[unused0]` skipped. BERT-family WordPiece vocabularies list their pieces by corpus frequency
    after the single characters, so these are the teacher's most common words and word endings."""
    special = set(tokenizer.all_special_ids)
    out: list[int] = []
    for token, i in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        if len(out) == n:
            break
        placeholder = token.startswith("[") and token.endswith("]")
        if i not in special and not placeholder and len(token.removeprefix("##")) > 1:
            out.append(i)
    return out


def _remap_ids(node, new_ids: dict[str, int]):
    """Post-processor settings with every special token's id replaced by its new id (tokens stay)."""
    if isinstance(node, list):
        return [_remap_ids(v, new_ids) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _remap_ids(v, new_ids) for k, v in node.items()}
    if "ids" in out and "tokens" in out:  # TemplateProcessing special_tokens entry
        out["ids"] = [new_ids[t] for t in out["tokens"]]
    for name in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
        if isinstance(out.get(name), list) and len(out[name]) == 2 and out[name][0] in new_ids:
            out[name] = [out[name][0], new_ids[out[name][0]]]
    return out


def pruned_tokenizer(tokenizer: PreTrainedTokenizerBase, kept_ids: list[int]) -> PreTrainedTokenizerBase:
    """The teacher's WordPiece tokenizer with only `kept_ids` (sorted teacher ids), renumbered 0..K-1 in order."""
    spec = _backend_json(tokenizer)
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens = [by_id[i] for i in kept_ids]
    new_ids = {t: i for i, t in enumerate(tokens)}
    unk = spec["model"].get("unk_token")
    if unk not in new_ids:
        raise TextDistillError(f"student.vocab 'task': the unknown token {unk!r} is not among the kept tokens; "
                               "set student.vocab to 'teacher'")
    spec["model"]["vocab"] = new_ids
    spec["added_tokens"] = [{**a, "id": new_ids[a["content"]]} for a in spec.get("added_tokens", [])
                            if a["content"] in new_ids]
    spec["post_processor"] = _remap_ids(spec.get("post_processor"), new_ids)
    if spec.get("padding"):
        pad = spec["padding"].get("pad_token")
        if pad in new_ids:
            spec["padding"]["pad_id"] = new_ids[pad]
    backend = Tokenizer.from_str(json.dumps(spec))
    # keep the teacher's class and settings (lower-casing, special tokens, model_max_length), so the saved
    # folder loads with AutoTokenizer like the teacher's
    skip = {"vocab", "merges", "vocab_file", "tokenizer_file", "tokenizer_object", "name_or_path"}
    kwargs = {k: v for k, v in tokenizer.init_kwargs.items() if k not in skip}
    try:
        new = type(tokenizer)(tokenizer_object=backend, **kwargs)
    except (TypeError, ValueError):
        new = PreTrainedTokenizerFast(tokenizer_object=backend, model_input_names=tokenizer.model_input_names,
                                      model_max_length=tokenizer.model_max_length, **tokenizer.special_tokens_map)
    if new.get_vocab() != new_ids:
        raise TextDistillError(f"student.vocab 'task': could not rebuild a pruned {type(tokenizer).__name__}; "
                               "set student.vocab to 'teacher'")
    return new


def id_map(kept_ids: list[int], teacher_vocab_size: int, unk_id: int) -> torch.Tensor:
    """[V_teacher] long: the student id of each teacher id (`unk_id`, a student id, for ids not kept)."""
    out = torch.full((teacher_vocab_size,), unk_id, dtype=torch.long)
    out[torch.tensor(kept_ids, dtype=torch.long)] = torch.arange(len(kept_ids))
    return out


def remap_encoded(part: Encoded | None, mapping: torch.Tensor, pad_id: int) -> Encoded | None:
    """`part` in student ids (`pad_id` a student id), with its teacher ids kept as `teacher_input_ids`."""
    if part is None:
        return None
    table = mapping.tolist()
    return Encoded(input_ids=[[table[i] for i in ids] for ids in part.input_ids], token_type_ids=part.token_type_ids,
                   labels=part.labels, teacher_logits=part.teacher_logits, lengths=list(part.lengths), pad_id=pad_id,
                   teacher_input_ids=part.input_ids, teacher_pad_id=part.pad_id)


def check_pruned_vocabulary(teacher_tok: PreTrainedTokenizerBase, student_tok: PreTrainedTokenizerBase,
                            kept_ids: list[int], student_vocab_size: int) -> None:
    """Start-up check: student id i is the teacher's token kept_ids[i], and the embedding has a row for each."""
    t_by_id = {i: t for t, i in teacher_tok.get_vocab().items()}
    s_by_id = {i: t for t, i in student_tok.get_vocab().items()}
    differ = [i for i, t_id in enumerate(kept_ids) if s_by_id.get(i) != t_by_id.get(t_id)]
    if differ or len(s_by_id) != len(kept_ids):
        i = differ[0] if differ else len(kept_ids)
        raise TextDistillError(f"pruned student tokenizer does not match the kept teacher tokens (student id {i}: "
                               f"{s_by_id.get(i)!r}); please report this")
    if student_vocab_size < len(kept_ids):
        raise TextDistillError(f"student embedding has {student_vocab_size} rows but its pruned tokenizer has "
                               f"{len(kept_ids)} tokens; please report this")


def check_same_segmentation(student_ids: list[list[int]], remapped: list[list[int]], role: str) -> None:
    """On the pruning text, the pruned tokenizer must give exactly the teacher's ids remapped (see above)."""
    bad = [i for i, (a, b) in enumerate(zip(student_ids, remapped)) if a != b]
    if bad or len(student_ids) != len(remapped):
        raise TextDistillError(f"{role}: the pruned tokenizer splits {len(bad)} examples differently from the teacher's "
                               f"(e.g. example {bad[0] if bad else len(remapped)}); set student.vocab to 'teacher' "
                               "and please report this")
