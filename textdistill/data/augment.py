"""Teacher-labelled variants of the training texts (data augmentation for distillation).

A variant of an example changes a share of its tokens: a third of the changed ones are deleted, a third
become the mask token, a third are replaced by a token drawn from the training data's own tokens (so
replacements follow the task's word distribution). Special tokens ([CLS], [SEP], padding) are never
touched. Variants carry no gold label: the teacher's soft targets are their only training signal (as in
TinyBERT's task-specific augmentation, https://arxiv.org/abs/1909.10351, here without a masked LM).

Working on token ids, not text, keeps the variants exactly aligned with the tokenizer (no re-tokenising)
and makes them a pure function of (token ids, copies, share, seed).
"""

from __future__ import annotations

import random

import torch

from textdistill.data.classification import Encoded
from textdistill.losses import IGNORE_INDEX


def token_variants(part: Encoded, copies: int, share: float, special_ids: set[int], mask_id: int | None,
                   seed: int) -> Encoded:
    """`copies` variants of every example of `part` (copy-major order), unlabelled, without teacher logits."""
    rng = random.Random(seed)
    pool = [t for ids in part.input_ids for t in ids if t not in special_ids]  # the data's own token distribution
    input_ids: list[list[int]] = []
    types: list[list[int]] | None = [] if part.token_type_ids else None
    for _ in range(copies):
        for i, ids in enumerate(part.input_ids):
            type_row = part.token_type_ids[i] if part.token_type_ids else None
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
            input_ids.append(new_ids)
            if types is not None:
                types.append(new_types)
    return Encoded(input_ids=input_ids, token_type_ids=types,
                   labels=torch.full((len(input_ids),), IGNORE_INDEX, dtype=torch.long),
                   lengths=[len(x) for x in input_ids], pad_id=part.pad_id)
