import torch
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from textdistill.data.batching import pad_rows
from textdistill.evaluation.decoding_speed import measure_generation_speed


def tiny_models():
    torch.manual_seed(0)
    teacher = GPT2LMHeadModel(GPT2Config(vocab_size=99, n_positions=64, n_embd=32, n_layer=4, n_head=2))
    student = GPT2LMHeadModel(GPT2Config(vocab_size=99, n_positions=64, n_embd=32, n_layer=2, n_head=2))
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=99, d_model=32, d_ff=37, d_kv=8, num_layers=2,
                                             num_heads=4, decoder_start_token_id=0, pad_token_id=0))
    return {"teacher": teacher, "student": student, "t5": t5}


def test_pad_rows_left_and_right():
    ids, mask = pad_rows([[5, 6, 7], [8]], 0, left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_rows([[5, 6, 7], [8]], 0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_measure_generation_speed_keys_and_positive_numbers():
    models = tiny_models()
    prompts = [[3, 4, 5, 6], [7, 8], [9, 10, 11]]
    result = measure_generation_speed(models, prompts, pad_token_id=0, max_new_tokens=4,
                                      batch_sizes=(1, 3), calls=3, warmup=1)
    assert set(result) == {"teacher", "student", "t5"}
    for per_model in result.values():
        assert set(per_model) == {"batch_1", "batch_3"}
        for stats in per_model.values():
            assert set(stats) == {"latency_p50_ms", "latency_p95_ms", "tokens_per_s", "sequences_per_s", "calls"}
            assert stats["calls"] == 3
            assert stats["latency_p95_ms"] >= stats["latency_p50_ms"] > 0
            assert stats["tokens_per_s"] == stats["sequences_per_s"] * 4 > 0
    assert all(not m.training for m in models.values())
