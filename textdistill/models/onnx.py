"""ONNX graphs of students, checked against PyTorch, and the ONNX Runtime sessions that run them.

Classifiers: `model.onnx` (input_ids, attention_mask[, token_type_ids] -> logits [B, C]) and its int8 variant
`model.int8.onnx`, written with the TorchScript-based exporter (no extra package), batch and sequence length
dynamic; `OnnxClassifier` calls a session like a Hugging Face classifier.

Generation students, files written beside the Hugging Face folder:
- causal LM: `model.onnx` (input_ids, attention_mask -> logits [B, T, V]);
- encoder-decoder: `encoder.onnx` (input_ids, attention_mask -> encoder_hidden_states [B, S, d]) and
  `decoder.onnx` (decoder_input_ids, encoder_hidden_states, attention_mask -> logits [B, T, V]);
- each also as `*.int8.onnx`, weights dynamically quantised to int8.

The graphs have no key/value cache: each step re-reads the whole prefix, so decoding cost grows with the
square of the output length. They suit short outputs (a translated verse, a label-like answer); for long
generations serve the Hugging Face folder, which decodes with a cache.

Export uses the `torch.export`-based exporter (`dynamo=True`): the TorchScript exporter traced the
attention masks of current `transformers` models into wrong graphs (logits off by 0.1-3 on GPT-2,
Marian, mBART and T5, exact only on Llama).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from textdistill.errors import TextDistillError
from textdistill.models.quantisation import fake_quantise

ONNX_TOLERANCE = 1e-4
# int8 graph against the fake-quantised model, relative to the logits' scale: float rounding, and a value on a
# rounding boundary landing on the neighbouring int8 level, stay far below the int8-vs-float gap it guards
INT8_TOLERANCE = 1e-3


class _NotFromOnnxRuntime(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def quiet_export():
    """Silence what the exporter and the quantiser print about their own internals: the tracer's notes on
    Python control flow and ONNX Runtime's advice to pre-process before quantising. Neither tells a user
    anything; what decides is the comparison of every exported graph with PyTorch that follows.

    The quantiser logs through the root logger (`logging.warning`), which installs a stderr handler on the
    root logger when it has none; a null handler prevents that side effect, a filter drops its records.
    """
    root = logging.getLogger()
    handler, quiet = logging.NullHandler(), _NotFromOnnxRuntime()
    root.addHandler(handler)
    root.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(quiet)
        root.removeHandler(handler)


class _Positional(torch.nn.Module):
    """The classifier with positional inputs in a fixed order and only its logits out, as ONNX wants it."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits  # [B, C]


def export_classifier_onnx(model, tokenizer, out: Path, probes: list[str], require_int8_match: bool = False) -> dict:
    """Write `model.onnx` (float32) and `model.int8.onnx` (dynamic int8 weights) and check them.

    Uses the TorchScript-based exporter (`dynamo=False`), which needs no extra package; batch and
    sequence length are dynamic axes. The float32 file must reproduce PyTorch's logits on the probes. The
    int8 file is compared with the same model fake-quantised in PyTorch (`models/quantisation.py`, the
    simulation quantisation-aware training learns against), one probe at a time as served at batch 1: their
    largest difference relative to the logits' scale is reported, and with `require_int8_match` (a
    quantisation-aware student) it must be below INT8_TOLERANCE.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    enc = tokenizer(probes, padding=True, truncation=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    with torch.no_grad(), quiet_export():
        torch.onnx.export(_Positional(model, names).eval(), tuple(enc[n] for n in names), str(out / "model.onnx"),
                          input_names=names, output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
        quantize_dynamic(str(out / "model.onnx"), str(out / "model.int8.onnx"), weight_type=QuantType.QInt8)
    feed = {n: enc[n].numpy() for n in names}
    with torch.inference_mode():
        reference = model(**enc).logits.numpy()  # [N, C]
    diffs = {}
    for name in ("model.onnx", "model.int8.onnx"):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        diffs[name] = float(np.abs(session.run(None, feed)[0] - reference).max())
    if diffs["model.onnx"] > ONNX_TOLERANCE:
        raise TextDistillError(f"the ONNX model gives different logits (max difference {diffs['model.onnx']:.2e}); "
                               "please report this")
    # one probe at a time: an activation's int8 range is its whole tensor's, padding rows included, and the
    # graph and PyTorch fill padded rows differently (they never reach the logits of real tokens in float)
    session = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    simulated, int8 = [], []
    for probe in probes:
        one = tokenizer([probe], truncation=True, return_tensors="pt")
        simulated.append(fake_quant_logits(model, {n: one[n] for n in names}))  # [1, C]
        int8.append(session.run(None, {n: one[n].numpy() for n in names})[0])
    simulated, int8 = np.concatenate(simulated), np.concatenate(int8)  # [N, C]
    relative = float(np.abs(int8 - simulated).max() / max(float(np.abs(simulated).max()), 1e-12))
    if require_int8_match and relative > INT8_TOLERANCE:
        raise TextDistillError(f"the int8 ONNX model differs from the quantisation-aware student's fake-quantised "
                               f"logits by {relative:.1e} of their scale (at most {INT8_TOLERANCE:g} expected); "
                               "please report this")
    return {"onnx_max_logit_difference": diffs["model.onnx"], "int8_max_logit_difference": diffs["model.int8.onnx"],
            "int8_vs_fake_quant_relative_difference": relative}


@torch.inference_mode()
def fake_quant_logits(model, inputs: dict) -> np.ndarray:
    """`model`'s logits with the int8 export simulated (a fake-quantised copy; `model` is left as it is)."""
    simulated = fake_quantise(copy.deepcopy(model)).eval()
    return simulated(**inputs).logits.float().numpy()


class OnnxClassifier:
    """An ONNX Runtime session called like a Hugging Face classifier: `model(**inputs).logits`."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # no busy-waiting between calls: spinning worker threads would steal the cores from the models
        # measured after this one in the interleaved loop (PyTorch's teacher ran several times slower beside
        # them; docs/measurements.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def eval(self):
        return self

    def __call__(self, **inputs):
        feed = {n: inputs[n].numpy() for n in self.names}
        return _Out(torch.from_numpy(self.session.run(None, feed)[0]))


class _Out:
    def __init__(self, logits):
        self.logits = logits


class _CausalLogits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class _Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _Decoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, encoder_hidden_states, attention_mask):
        from transformers.modeling_outputs import BaseModelOutput

        return self.model(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden_states),
                          attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, use_cache=False).logits


def _export(module: torch.nn.Module, args: tuple, names: list[str], axes: dict[str, dict[int, str]], path: Path):
    # lengths are declared >= 2 because torch.export specialises sizes 0 and 1 (hence the 2-token example
    # decoder prefix); the graphs still run on 1-token prefixes, as greedy decoding's first step needs
    dims = {}
    shapes = {n: {i: dims.setdefault(a, torch.export.Dim(a, min=2 if a != "batch" else 1)) for i, a in ax.items()}
              for n, ax in axes.items()}
    # one self-contained file unless the weights pass protobuf's 2 GB limit (then beside it, PATH.data)
    external = sum(p.numel() * p.element_size() for p in module.parameters()) > 1.5e9
    with torch.no_grad(), quiet_export():
        try:
            torch.onnx.export(module.eval(), args, str(path), input_names=names,
                              output_names=["encoder_hidden_states" if path.name.startswith("encoder") else "logits"],
                              dynamic_shapes=shapes, dynamo=True, external_data=external, verbose=False)
        except ImportError as e:
            raise TextDistillError(f"ONNX export of generation models needs the onnxscript package ({e}); "
                                   "pip install onnxscript") from None


def write_generation_onnx(model, task: str, probes: dict[str, torch.Tensor], out: Path) -> None:
    """Write the float32 graphs of `model` and their int8 variants to `out`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ids, mask = probes["input_ids"], probes["attention_mask"]
    if task == "causal_lm":
        graphs = {"model.onnx": (_CausalLogits(model), (ids, mask), ["input_ids", "attention_mask"],
                                 {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}})}
    else:
        with torch.no_grad():
            hidden = _Encoder(model)(ids, mask)
        starts = torch.full((ids.shape[0], 2), model.config.decoder_start_token_id, dtype=torch.long)
        graphs = {"encoder.onnx": (_Encoder(model), (ids, mask), ["input_ids", "attention_mask"],
                                   {"input_ids": {0: "batch", 1: "source"}, "attention_mask": {0: "batch", 1: "source"}}),
                  "decoder.onnx": (_Decoder(model), (starts, hidden, mask),
                                   ["decoder_input_ids", "encoder_hidden_states", "attention_mask"],
                                   {"decoder_input_ids": {0: "batch", 1: "target"},
                                    "encoder_hidden_states": {0: "batch", 1: "source"},
                                    "attention_mask": {0: "batch", 1: "source"}})}
    for name, (module, args, names, axes) in graphs.items():
        _export(module, args, names, axes, out / name)
        with quiet_export():
            quantize_dynamic(str(out / name), str(out / name.replace(".onnx", ".int8.onnx")),
                             weight_type=QuantType.QInt8)


class OnnxGreedy:
    """Greedy decoding of one exported student folder with ONNX Runtime (float32, or `int8=True`).

    `generate(input_ids, max_new_tokens)` takes one unpadded prompt or source (a list of ids) and returns
    the new ids, stopping after the EOS id; no key/value cache (see the module docstring).
    """

    def __init__(self, folder: str | Path, task: str, eos_token_id: int | None, decoder_start_token_id: int | None = None,
                 int8: bool = False):
        import onnxruntime as ort

        suffix = ".int8.onnx" if int8 else ".onnx"
        folder = Path(folder)

        def session(name):
            return ort.InferenceSession(str(folder / (name + suffix)), providers=["CPUExecutionProvider"])

        self.task, self.eos, self.start = task, eos_token_id, decoder_start_token_id
        if task == "causal_lm":
            self.model = session("model")
        else:
            self.encoder, self.decoder = session("encoder"), session("decoder")

    def generate(self, input_ids: list[int], max_new_tokens: int) -> list[int]:
        ids = np.asarray([input_ids], dtype=np.int64)
        mask = np.ones_like(ids)
        new: list[int] = []
        if self.task == "seq2seq":
            hidden = self.encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            prefix = [self.start]
        for _ in range(max_new_tokens):
            if self.task == "causal_lm":
                seq = np.asarray([input_ids + new], dtype=np.int64)
                logits = self.model.run(None, {"input_ids": seq, "attention_mask": np.ones_like(seq)})[0]
            else:
                seq = np.asarray([prefix + new], dtype=np.int64)
                logits = self.decoder.run(None, {"decoder_input_ids": seq, "encoder_hidden_states": hidden,
                                                 "attention_mask": mask})[0]
            token = int(logits[0, -1].argmax())
            new.append(token)
            if token == self.eos:
                break
        return new


@torch.inference_mode()
def check_generation_onnx(model, task: str, tokenizer, texts: list[str], out: Path, max_new_tokens: int = 12) -> dict:
    """Logits of the float32 graphs against PyTorch on `texts` (must agree within 1e-4), and greedy
    outputs of the ONNX Runtime loop against `model.generate` (float32 and int8)."""
    # plain greedy; one token more than compared, since a configured forced EOS replaces the last one
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens + 1, bad_words_ids=None, min_length=0)
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    if config.pad_token_id is None:
        config.pad_token_id = eos
    start = getattr(model.config, "decoder_start_token_id", None)
    loops = {kind: OnnxGreedy(out, task, eos, start, int8=kind == "int8") for kind in ("float32", "int8")}
    graphs = loops["float32"]  # its sessions also serve the logits check
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    if task == "causal_lm":
        got = graphs.model.run(None, feed)[0]
        want = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.numpy()
        diff = float(np.abs(got - want)[mask.bool().numpy()].max())  # padded positions are not read
    else:
        hidden = graphs.encoder.run(None, feed)[0]
        decoder_ids = torch.cat([torch.full((len(texts), 1), start), ids[:, :3]], 1)  # any prefix will do
        got = graphs.decoder.run(None, {"decoder_input_ids": decoder_ids.numpy(), "encoder_hidden_states": hidden,
                                        "attention_mask": mask.numpy()})[0]
        want = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, use_cache=False).logits.numpy()
        diff = float(np.abs(got - want).max())
    if diff > ONNX_TOLERANCE:
        raise TextDistillError(f"the ONNX graphs give different logits from PyTorch (max difference {diff:.2e}); "
                               "please report this")
    same = dict.fromkeys(loops, 0)
    for text in texts:
        prompt = tokenizer(text)["input_ids"]
        out_ids = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 generation_config=config)[0].tolist()
        ref = (out_ids[len(prompt):] if task == "causal_lm" else out_ids[1:])[:max_new_tokens]  # without the prompt / start id
        for kind, loop in loops.items():
            same[kind] += loop.generate(prompt, max_new_tokens) == ref
    return {"onnx_files": sorted(p.name for p in out.glob("*.onnx")), "onnx_max_logit_difference": diff,
            "onnx_greedy_same_as_pytorch": same["float32"] / len(texts),
            "int8_greedy_same_as_pytorch": same["int8"] / len(texts)}
