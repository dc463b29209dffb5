"""A narrower student initialised from the teacher: keep the residual-stream dimensions that matter most.

**Which dimensions.** The residual stream is one space shared by every layer (embeddings, each attention
and feed-forward block reads from and writes to it), so one set of kept dimensions serves all layers.
They are chosen by activation importance: the mean |activation| of each dimension of the teacher's
residual stream (the embedding output and the output of every kept layer), over the real tokens of a few
batches of task data. Every weight that reads from or writes to the stream is sliced to those dimensions
(embeddings, query/key/value inputs, attention output, feed-forward in and out, every LayerNorm's gain
and bias, pooler, classifier).

**Why selection and not a PCA/SVD projection.** BERT-style encoders normalise the stream with LayerNorm
after every block, which works coordinate by coordinate (a per-dimension gain and bias, the mean taken over
the coordinates). A rotation of the stream (what a PCA projection P [H_t, H_s] is) does not commute with
it: the projected gains would mix dimensions and the mean would be taken over other coordinates. Keeping
a subset of coordinates keeps each LayerNorm's gain and bias meaningful, keeps the teacher's large
"outlier" dimensions (which carry most of the stream's mass, and which importance keeps by construction),
and, with every dimension kept, gives back the layer-copied student exactly.

**Attention heads.** With `num_heads` heads of size d_s = hidden / num_heads against the teacher's
n_t heads of size d_t: the `num_heads` heads of each layer with the largest ||W_v rows|| * ||W_o columns||
are kept whole (weight magnitude, like the feed-forward neurons); when d_s < d_t, each kept head also keeps
its d_s query/key dimensions with the largest ||W_q row|| * ||W_k row|| and its d_s value/output
dimensions with the largest ||W_v row|| * ||W_o column||, and the query is scaled by sqrt(d_s / d_t) so
the attention scores keep the teacher's 1/sqrt(d_t) scale. More heads than the teacher, or larger heads,
cannot be taken from it: that is an error (use student.init 'shrink').

Only BERT-style attention naming (`attention.self.query|key|value`, `attention.output.dense`) is supported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from textdistill.data.batching import bucketed_batches
from textdistill.data.labelled import Encoded
from textdistill.errors import TextDistillError

_ATTN = re.compile(r"^.*\.layer\.(\d+)\.attention\.(self\.(query|key|value)|output\.dense)\.(weight|bias)$")


@dataclass(frozen=True)
class WidthPlan:
    hidden: torch.Tensor  # [H_s] kept residual dimensions of the teacher, ascending
    qk: dict[int, torch.Tensor]  # student layer -> [n_s * d_s] kept query/key output dimensions
    vo: dict[int, torch.Tensor]  # student layer -> [n_s * d_s] kept value / attention-output dimensions
    qk_scale: float  # sqrt(d_s / d_t), applied to the query weights and bias


def student_heads(hidden: int, num_heads: int | None, t_hidden: int, t_heads: int) -> int:
    """The student's head count, checked: whole teacher heads where the sizes allow it."""
    t_dim = t_hidden // t_heads
    if hidden > t_hidden:
        raise TextDistillError(f"student.hidden_size {hidden} is larger than the teacher's {t_hidden}; with init "
                               "'teacher_layers' it can only shrink (use init 'shrink' for a wider model)")
    if num_heads is None:
        if hidden % t_dim:
            raise TextDistillError(f"student.hidden_size {hidden} is not a multiple of the teacher's head size {t_dim}; "
                                   "set student.num_heads (a divisor of hidden_size)")
        num_heads = hidden // t_dim  # keep the head size, drop whole heads
    if hidden % num_heads:
        raise TextDistillError(f"student.hidden_size {hidden} is not divisible by student.num_heads {num_heads}; "
                               "pick sizes where it is")
    if num_heads > t_heads or hidden // num_heads > t_dim:
        raise TextDistillError(f"student.num_heads {num_heads} (head size {hidden // num_heads}) cannot be taken from "
                               f"the teacher's {t_heads} heads of size {t_dim}: use at most {t_heads} heads of at most "
                               f"{t_dim} dimensions, or student.init 'shrink'")
    return num_heads


def calibration_batches(part: Encoded, seed: int, batches: int = 4, batch_size: int = 32) -> list[dict[str, torch.Tensor]]:
    """A few shuffled batches of model inputs (in the teacher's ids) to rank the residual dimensions on."""
    inputs = ("input_ids", "attention_mask", "token_type_ids")
    chosen = bucketed_batches(part.lengths, batch_size, seed, epoch=0)[:batches]
    return [{k: v for k, v in part.collate(index).items() if k in inputs} for index in chosen]


@torch.no_grad()
def residual_importance(teacher: torch.nn.Module, batches: list[dict[str, torch.Tensor]],
                        layers: list[int]) -> torch.Tensor:
    """[H_t] mean |activation| of each residual dimension over real tokens, embeddings and kept layers."""
    if not batches:
        raise TextDistillError("a narrower student.hidden_size needs a few batches of task data to rank the "
                               "teacher's dimensions; none were given")
    was_training = teacher.training
    teacher.eval()
    total, count = None, 0
    for batch in batches:
        out = teacher(**batch, output_hidden_states=True)
        mask = batch["attention_mask"].bool()  # [B, L]
        for h in [out.hidden_states[0]] + [out.hidden_states[i + 1] for i in layers]:
            part = h.float().abs()[mask].sum(0)  # [H_t]
            total = part if total is None else total + part
            count += int(mask.sum())
    teacher.train(was_training)
    return total / count


def _attention_weights(state: dict, layer: int) -> dict[str, torch.Tensor]:
    found = {}
    for key, tensor in state.items():
        m = _ATTN.match(key)
        if m and int(m.group(1)) == layer and m.group(4) == "weight":
            found[m.group(3) or "output"] = tensor
    if set(found) != {"query", "key", "value", "output"}:
        raise TextDistillError("student.hidden_size with init 'teacher_layers' supports BERT-style attention "
                               "(attention.self.query/key/value, attention.output.dense); use student.init 'shrink'")
    return found


def _head_dims(score: torch.Tensor, heads: torch.Tensor, t_dim: int, s_dim: int) -> torch.Tensor:
    """The `s_dim` highest-scoring dimensions inside each kept head, heads in ascending order."""
    picked = []
    for h in heads.tolist():
        inside = score[h * t_dim : (h + 1) * t_dim].topk(s_dim).indices.sort().values
        picked.append(inside + h * t_dim)
    return torch.cat(picked)


def plan_width(state: dict, importance: torch.Tensor, n_layers: int, hidden: int, num_heads: int,
               t_heads: int) -> WidthPlan:
    """Which teacher dimensions the narrower student keeps; `state` is keyed by student layer index."""
    t_hidden = importance.numel()
    t_dim, s_dim = t_hidden // t_heads, hidden // num_heads
    kept = importance.topk(hidden).indices.sort().values  # with hidden == t_hidden: every dimension, in order
    qk, vo = {}, {}
    for layer in range(n_layers):
        w = _attention_weights(state, layer)  # query/key/value [H_t(heads), H_t], output [H_t, H_t(heads)]
        vo_score = w["value"].norm(dim=1) * w["output"].norm(dim=0)  # [H_t(heads)]
        qk_score = w["query"].norm(dim=1) * w["key"].norm(dim=1)  # [H_t(heads)]
        head_score = vo_score.view(t_heads, t_dim).sum(1)  # [n_t]
        heads = head_score.topk(num_heads).indices.sort().values
        qk[layer] = _head_dims(qk_score, heads, t_dim, s_dim)
        vo[layer] = _head_dims(vo_score, heads, t_dim, s_dim)
    return WidthPlan(hidden=kept, qk=qk, vo=vo, qk_scale=math.sqrt(s_dim / t_dim))


def narrow_width(state: dict, shapes: dict[str, torch.Size], plan: WidthPlan) -> dict:
    """`state` sliced to the student's width: attention head dimensions by `plan.qk`/`plan.vo`, every
    other dimension whose size changes by `plan.hidden`."""
    out = {}
    for key, tensor in state.items():
        target = shapes[key]
        m = _ATTN.match(key)
        if m:
            layer, which = int(m.group(1)), m.group(3) or "output"
            head_index = plan.qk[layer] if which in ("query", "key") else plan.vo[layer]
            if which == "output":  # weight [H, heads], bias [H]
                tensor = tensor.index_select(0, plan.hidden)
                if tensor.dim() == 2:
                    tensor = tensor.index_select(1, head_index)
            else:  # weight [heads, H], bias [heads]
                tensor = tensor.index_select(0, head_index)
                if tensor.dim() == 2:
                    tensor = tensor.index_select(1, plan.hidden)
                if which == "query" and plan.qk_scale != 1.0:
                    tensor = tensor * plan.qk_scale
        else:
            for dim, size in enumerate(tensor.shape):
                if size != target[dim]:
                    tensor = tensor.index_select(dim, plan.hidden)
        if tensor.shape != target:
            raise TextDistillError(f"cannot narrow {key!r}: shape {tuple(tensor.shape)} vs student {tuple(target)}")
        out[key] = tensor
    return out
