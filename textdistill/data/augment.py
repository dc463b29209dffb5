"""Teacher-labelled variants of the training texts (data augmentation for distillation).

A variant of an example changes a share of its tokens: a third of the changed ones are deleted, a third
become the mask token, a third are replaced by a token drawn from the training data's own tokens (so
replacements follow the task's word distribution). Special tokens ([CLS], [SEP], padding) are never
touched. Variants carry no gold label: the teacher's soft targets are their only training signal (as in
TinyBERT's task-specific augmentation, https://arxiv.org/abs/1909.10351, here without a masked LM).

Two more kinds, switched on by `data.augment_kinds` (each variant then picks one of the listed kinds):
`span` deletes one contiguous span of `share` of the text's tokens, and `mix` joins the beginning of the
text to the end of another training text (a cut point drawn in each; single-text tasks only), a text
the teacher has never seen whole, labelled by its soft targets like the others.

Working on token ids, not text, keeps the variants exactly aligned with the tokenizer (no re-tokenising)
and makes them a pure function of (token ids, copies, share, kinds, seed).
"""

from __future__ import annotations

import random

import torch

from textdistill.data.labelled import Encoded
from textdistill.losses import IGNORE_INDEX


KINDS = ("tokens", "span", "mix")


def token_variants(part: Encoded, copies: int, share: float, special_ids: set[int], mask_id: int | None,
                   seed: int, kinds: tuple[str, ...] | list[str] = ("tokens",)) -> Encoded:
    """`copies` variants of every example of `part` (copy-major order), unlabelled, without teacher logits."""
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
