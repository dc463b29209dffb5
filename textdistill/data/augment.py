"""Teacher-labelled variants of the training texts (data augmentation for distillation).

A variant of an example changes a share of its tokens: a third of the changed ones are deleted, a third
become the mask token, a third are replaced by a token drawn from the training data's own tokens (so
replacements follow the task's word distribution). Special tokens ([CLS], [SEP], padding) are never
touched. Variants carry no gold label: the teacher's soft targets are their only training signal (as in
TinyBERT's task-specific augmentation, https://arxiv.org/abs/1909.10351, here without a masked LM).

More kinds, switched on by `data.augment_kinds` (each variant then picks one of the listed kinds):
`neighbours` replaces a `share` of the tokens, each by one of its nearest neighbours in the teacher's
input-embedding space (cosine, among the tokens of the training data of the same word-piece kind: a word
start by a word start, a continuation piece by a continuation piece; TinyBERT's word-replacement
augmentation with the teacher's own embeddings in place of GloVe), so a variant stays a plausible
sentence whose meaning may move; `span` deletes one contiguous span of `share` of the text's tokens,
and `mix` joins the beginning of the text to the end of another training text (a cut point drawn in
each; single-text tasks only), a text the teacher has never seen whole, labelled by its soft targets
like the others.

Working on token ids, not text, keeps the variants exactly aligned with the tokenizer (no re-tokenising)
and makes them a pure function of (token ids, copies, share, kinds, seed).
"""

from __future__ import annotations

import random

import torch

from textdistill.data.labelled import Encoded
from textdistill.losses import IGNORE_INDEX


def token_variants(part: Encoded, copies: int, share: float, special_ids: set[int], mask_id: int | None,
                   seed: int, kinds: tuple[str, ...] | list[str] = ("tokens",),
                   neighbours: dict[int, list[int]] | None = None) -> Encoded:
    """`copies` variants of every example of `part` (copy-major order), unlabelled, without teacher logits.

    `neighbours` (token id -> nearby ids, from `embedding_neighbours`) is needed by the kind 'neighbours'.
    """
    if "neighbours" in kinds and neighbours is None:
        raise ValueError("augment kind 'neighbours' needs the neighbour table (embedding_neighbours)")
    rng = random.Random(seed)
    pool = [t for ids in part.input_ids for t in ids if t not in special_ids]  # the data's own token distribution
    input_ids: list[list[int]] = []
    types: list[list[int]] | None = [] if part.token_type_ids else None
    for _ in range(copies):
        for i, ids in enumerate(part.input_ids):
            type_row = part.token_type_ids[i] if part.token_type_ids else None
            kind = kinds[0] if len(kinds) == 1 else rng.choice(kinds)  # one kind draws nothing: same variants
            if kind == "span":
                new_ids, new_types = _span_deleted(ids, type_row, share, special_ids, rng)
            elif kind == "mix":
                other = part.input_ids[rng.randrange(len(part.input_ids))]
                new_ids = _mixed(ids, other, special_ids, rng)
                new_types = [0] * len(new_ids)
            elif kind == "neighbours":
                new_ids = _replaced_by_neighbours(ids, share, neighbours, rng)
                new_types = list(type_row) if type_row is not None else []
            else:
                new_ids, new_types = _changed_tokens(ids, type_row, share, special_ids, mask_id, pool, rng)
            input_ids.append(new_ids)
            if types is not None:
                types.append(new_types)
    return Encoded(input_ids=input_ids, token_type_ids=types,
                   labels=torch.full((len(input_ids),), IGNORE_INDEX, dtype=torch.long),
                   lengths=[len(x) for x in input_ids], pad_id=part.pad_id)


def _changed_tokens(ids, type_row, share, special_ids, mask_id, pool, rng) -> tuple[list[int], list[int]]:
    """A third of the changed tokens deleted, a third masked, a third replaced from `pool`."""
    new_ids, new_types = [], []
    for pos, token in enumerate(ids):
        r = rng.random()
        if token in special_ids or r >= share or not pool:
            new_ids.append(token)
        elif r < share / 3:
            continue  # deleted (its segment id goes with it)
        elif r < 2 * share / 3 and mask_id is not None:
            new_ids.append(mask_id)
        else:
            new_ids.append(rng.choice(pool))
        if type_row is not None:
            new_types.append(type_row[pos])
    return new_ids, new_types


def _span_deleted(ids, type_row, share, special_ids, rng) -> tuple[list[int], list[int]]:
    """`ids` without one contiguous run of round(share x body) of its non-special tokens (one token kept at least)."""
    body = [pos for pos, token in enumerate(ids) if token not in special_ids]
    width = min(round(share * len(body)), len(body) - 1)
    if width < 1:
        return list(ids), list(type_row) if type_row is not None else []
    start = rng.randrange(len(body) - width + 1)
    gone = set(body[start : start + width])
    keep = [pos for pos in range(len(ids)) if pos not in gone]
    return [ids[p] for p in keep], [type_row[p] for p in keep] if type_row is not None else []


def _mixed(ids, other, special_ids, rng) -> list[int]:
    """The leading special tokens and beginning of `ids`, the end of `other`'s text, `ids`' trailing specials;
    never longer than the longer of the two."""
    lead = 0
    while lead < len(ids) and ids[lead] in special_ids:
        lead += 1
    trail = len(ids)
    while trail > lead and ids[trail - 1] in special_ids:
        trail -= 1
    body, other_body = ids[lead:trail], [t for t in other if t not in special_ids]
    if not body or not other_body:
        return list(ids)
    head = body[: rng.randint(1, len(body))]
    tail = other_body[rng.randint(0, len(other_body) - 1):]
    room = max(len(ids), len(other)) - lead - (len(ids) - trail)
    return ids[:lead] + (head + tail)[:room] + ids[trail:]


def _replaced_by_neighbours(ids, share, neighbours, rng) -> list[int]:
    """Each token that has neighbours is replaced by one of them with probability `share`; the length stays."""
    out = list(ids)
    for pos, token in enumerate(ids):
        near = neighbours.get(token)
        if near and rng.random() < share:
            out[pos] = rng.choice(near)
    return out


def word_start_flags(tokens: list[str]) -> list[bool]:
    """Whether each vocabulary entry starts a word, by the tokenizer family's marking: WordPiece marks
    continuations with '##'; byte-level BPE ('Ġ') and SentencePiece ('▁') mark word starts."""
    if any(t.startswith("##") for t in tokens):
        return [not t.startswith("##") for t in tokens]
    for mark in ("\u0120", "\u2581"):  # 'Ġ' (GPT-2 / RoBERTa), '▁' (SentencePiece)
        if any(t.startswith(mark) for t in tokens):
            return [t.startswith(mark) for t in tokens]
    return [True] * len(tokens)


def embedding_neighbours(embeddings: torch.Tensor, candidates: list[int], word_start: list[bool], k: int = 8,
                         block: int = 1024) -> dict[int, list[int]]:
    """The `k` nearest `candidates` of each candidate by cosine of its input-embedding row, among candidates
    of its own word-piece kind (`word_start[id]`), itself excluded. `embeddings` `[V, D]`.

    Candidates are the non-special tokens of the training data, so a replacement never brings a special token
    or a token the student's task vocabulary lacks. Computed `block` rows at a time (memory `block x n`).
    """
    ids = torch.tensor(sorted(set(candidates)), dtype=torch.long)  # [n]
    if len(ids) < 2:
        return {}
    unit = torch.nn.functional.normalize(embeddings.detach().float()[ids], dim=-1)  # [n, D]
    kind = torch.tensor([word_start[i] for i in ids.tolist()])  # [n]
    table: dict[int, list[int]] = {}
    for start in range(0, len(ids), block):
        rows = slice(start, start + block)
        sim = unit[rows] @ unit.T  # [b, n]
        sim.masked_fill_(kind[rows, None] != kind[None, :], float("-inf"))  # only the same kind
        sim[torch.arange(sim.shape[0]), torch.arange(start, start + sim.shape[0])] = float("-inf")  # not itself
        top = sim.topk(min(k, len(ids) - 1), dim=-1)
        for row, (values, index) in enumerate(zip(top.values, top.indices)):
            near = ids[index[torch.isfinite(values)]].tolist()
            if near:
                table[int(ids[start + row])] = near
    return table


def neighbour_table(tokenizer, embeddings: torch.Tensor, part: Encoded, k: int = 8) -> dict[int, list[int]]:
    """`embedding_neighbours` over the non-special tokens of `part` (the training data), with the word-piece
    kinds of `tokenizer`'s vocabulary: what the kind 'neighbours' replaces tokens with."""
    special = set(tokenizer.all_special_ids)
    pool = sorted({t for ids in part.input_ids for t in ids if t not in special})
    flags = word_start_flags(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    return embedding_neighbours(embeddings, pool, flags, k)
