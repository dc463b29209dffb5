"""`teacher.path: train` for seq2seq: an encoder-decoder teacher trained from scratch on the run's data.

A shared source/target BPE tokenizer is trained on the training pairs with the `tokenizers` library,
a pre-LN (mBART-style) encoder-decoder (`teacher.architecture` sizes) is trained with cross-entropy through
the ordinary training loop (`teacher.finetune` settings), and the result is a plain Hugging Face folder,
cached across runs under a key of the data and the settings (like the classification teacher), so the
student runs of a benchmark share one teacher.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import torch

from textdistill.cache import cache_root
from textdistill.config import RunConfig
from textdistill.data.pairs import GenerationData, TokenData, encode_pairs
from textdistill.evaluation.generative import heldout_nll
from textdistill.pipeline.teacher_cache import TRAINING_NAME, cached_teacher
from textdistill.training.loop import train
from textdistill.training.objectives import label_objective
from textdistill.training.token_objectives import count_target_tokens

log = logging.getLogger("textdistill")
RECIPE_VERSION = 2  # 2: pre-LN (mBART-style) teacher
SPECIAL = ["<pad>", "</s>", "<unk>", "<s>"]  # ids 0..3; the decoder starts from the pad id


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level-free BPE tokenizer (Metaspace, so decoding restores spaces) whose encodings end with </s>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                                       show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>", model_max_length=1024)


def new_seq2seq_model(vocab_size: int, layers: int, d_model: int, heads: int, ffn: int, max_positions: int,
                      decoder_layers: int | None = None, seed: int = 0, kind: str = "mbart"):
    """A randomly initialised encoder-decoder with shared, tied embeddings (pad 0, </s> 1).

    `kind` 'mbart' (the default, used for teachers trained here) normalises before each block (pre-LN);
    'marian' normalises after it (post-LN). Trained from scratch at a learning rate near 1e-3, the post-LN
    encoder collapsed: every position of every source gave the same vector, so the decoder learned a
    language model that ignores the source (held-out loss equal to 1e-6 with sources shuffled).
    """
    from transformers import MarianConfig, MarianMTModel, MBartConfig, MBartForConditionalGeneration

    torch.manual_seed(seed)
    config_class, model_class = {"mbart": (MBartConfig, MBartForConditionalGeneration),
                                 "marian": (MarianConfig, MarianMTModel)}[kind]
    extra = {"decoder_vocab_size": vocab_size, "share_encoder_decoder_embeddings": True} if kind == "marian" else {}
    config = config_class(vocab_size=vocab_size, d_model=d_model, encoder_layers=layers,
                          decoder_layers=decoder_layers or layers, encoder_attention_heads=heads,
                          decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
                          max_position_embeddings=max_positions, pad_token_id=0, eos_token_id=1, bos_token_id=3,
                          decoder_start_token_id=0, forced_eos_token_id=1, dropout=0.1,
                          tie_word_embeddings=True, scale_embedding=True, **extra)
    model = model_class(config)
    model.generation_config.num_beams = 1
    model.generation_config.bad_words_ids = None
    model.generation_config.forced_bos_token_id = None
    return model


@torch.no_grad()
def source_shuffled_loss(model, data, batch_size: int) -> float:
    """Mean target-token loss with every source paired with the next example's target: a teacher that
    reads its source scores clearly worse here than on the right pairs."""
    roll = list(range(1, len(data))) + [0]
    swapped = TokenData(data.task, [data.input_ids[i] for i in roll], data.labels,
                        [data.prompt_lengths[i] for i in roll], data.pad_id, data.decoder_start_id)
    nll, n = heldout_nll(model.eval(), swapped, batch_size)
    return nll / max(n, 1)


def teacher_key(cfg: RunConfig, data: GenerationData) -> str:
    a = cfg.teacher.architecture
    # named as before the config was split by concept, so teachers cached then are found again
    settings = {"teacher_layers": a.num_layers, "teacher_d_model": a.hidden_size, "teacher_heads": a.num_heads,
                "teacher_ffn": a.intermediate_size, "vocab_size": a.vocab_size, "max_length": cfg.data.max_length,
                "max_target_length": cfg.data.max_target_length}
    # settings added later stay out of the key at their neutral value, so teachers cached before them are found;
    # settings that never change the weights stay out always (select_on is classification's: this teacher
    # keeps its best validation loss)
    neutral = {"min_steps": 0}
    unused = ("progress", "threads", "report_to", "select_on")
    finetune = {k: v for k, v in dataclasses.asdict(cfg.teacher.finetune).items()
                if k not in unused and not (k in neutral and v == neutral[k])}
    payload = {"recipe": RECIPE_VERSION, "settings": settings, "finetune": finetune, "train": data.train,
               "validation": data.validation}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def trained_seq2seq_teacher(cfg: RunConfig, data: GenerationData, warn: bool = True) -> tuple[Path, dict]:
    """The teacher folder for this data and these settings: trained once (a stopped training is continued),
    then read from the cache; `warn` says how many examples were truncated."""
    folder = cache_root() / "gen_teachers" / teacher_key(cfg, data)
    a, d = cfg.teacher.architecture, cfg.data

    def train_teacher(work: Path, resume: bool):
        tokenizer = train_tokenizer([t for pair in data.train for t in pair], a.vocab_size)
        model = new_seq2seq_model(len(tokenizer), a.num_layers, a.hidden_size, a.num_heads, a.intermediate_size,
                                  max(d.max_length, d.max_target_length) + 2, seed=cfg.teacher.finetune.seed)
        start = model.config.decoder_start_token_id
        train_set = encode_pairs(tokenizer, data.train, "seq2seq", d, start, "train", warn)
        validation = encode_pairs(tokenizer, data.validation, "seq2seq", d, start, "validation", warn)

        def evaluate(m):
            nll, n = heldout_nll(m, validation, cfg.teacher.batch_size)
            return {"neg_loss": -nll / max(n, 1)}

        log.info("teacher: training a %d-layer encoder-decoder from scratch (cached afterwards at %s)",
                 a.num_layers, folder)
        result = train(model, train_set, label_objective(), cfg.teacher.finetune, name=TRAINING_NAME, run_dir=work,
                       evaluate=evaluate, metric="neg_loss", count=count_target_tokens, resume=resume)
        shuffled = source_shuffled_loss(model, validation, cfg.teacher.batch_size)
        best = -result.best_score if result.best_score is not None else None
        if best is not None and shuffled - best < 0.01 * best:
            log.warning("teacher: its validation loss is %.3f with the sources shuffled and %.3f with the right ones: "
                        "it ignores the source (a language model of the targets). Train it longer or at a lower "
                        "teacher.finetune.learning_rate", shuffled, best)
        return model, tokenizer, {"base": "trained here (teacher.path 'train')", "train_seconds": result.seconds,
                                  "steps": result.steps, "validation_loss": best,
                                  "validation_loss_sources_shuffled": shuffled}

    return cached_teacher(folder, train_teacher)
