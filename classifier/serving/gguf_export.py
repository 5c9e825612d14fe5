"""Writes a registered model as one GGUF file, the format llama.cpp and Ollama load.

Why: a CPU host can then serve the router without Python or PyTorch. The adapter is merged into
the base weights as serving merges it (`classifier/model/lora_merge.py`), in full precision, and written at
f16 or f32 under llama.cpp's LLaMA names, with what its converter (`convert_hf_to_gguf.py`) writes:
the hyperparameters, the byte-level BPE tokenizer, and q/k rows permuted, since llama.cpp's rotary
embedding pairs neighbouring dimensions where transformers pairs the two halves (transformers'
GGUF loader undoes it). Departments, prompt and model id go in `switchboard.*` keys, so a file found
on its own says what it routes. Only the language model is in the file: the linear head, the
temperature and the out-of-scope bank stay in the adapter folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifier.model.base_model import LoadOptions, load_base_model
from classifier.model.lora_merge import read_lora
from classifier.routing.adapters import check_adapter_dir
from core.errors import SwitchboardError

if TYPE_CHECKING:
    import numpy as np
    import torch

DTYPES = ("f16", "f32")
# Pre-tokenizers llama.cpp knows by name, keyed by the tokenizer.json `pre_tokenizer` they come from.
_BYTE_LEVEL = {"type": "ByteLevel", "use_regex": True}
_SMOLLM = [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]


class ExportError(SwitchboardError):
    """The model cannot be written as a llama.cpp GGUF; the message says why in one line."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    size_bytes: int
    tensors: int
    dtype: str
    labels: list[str]
    pre_tokenizer: str


def export_gguf(*, adapter_dir: Path, base_model: str, cache_dir: Path, target: Path, dtype: str = "f16",
                name: str, model_id: int | None = None) -> ExportResult:
    """Merges the adapter into `base_model` and writes `target`, through a temporary file renamed at
    the end: a crash leaves no half-written file under the name."""
    if dtype not in DTYPES:
        raise ExportError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    meta = check_adapter_dir(adapter_dir)
    model, tokenizer = load_base_model(base_model, cache_dir=cache_dir,
                                       options=LoadOptions(device="cpu", precision="fp32"))
    read_lora(adapter_dir).apply(model, sign=+1)
    config = model.config
    scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    writer = None
    try:
        writer = _writer(scratch, config, dtype, name)
        pre = _add_tokenizer(writer, tokenizer, config.vocab_size)
        writer.add_description(f"Switchboard router: after '{meta.prompt.prefix}<message>{meta.prompt.suffix}' "
                               f"it writes one of: {', '.join(meta.labels)}")
        writer.add_array("switchboard.labels", list(meta.labels))
        writer.add_string("switchboard.prompt", json.dumps(meta.prompt.to_dict()))
        writer.add_string("switchboard.base_model", meta.base_model)
        if model_id is not None:
            writer.add_uint32("switchboard.model_id", model_id)
        count = _add_tensors(writer, model, dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with scratch.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(scratch, target)
    finally:
        if writer is not None:
            writer.close()
        scratch.unlink(missing_ok=True)
    return ExportResult(path=target, size_bytes=target.stat().st_size, tensors=count, dtype=dtype,
                        labels=list(meta.labels), pre_tokenizer=pre)


def _writer(path: Path, config: Any, dtype: str, name: str) -> Any:
    import gguf

    if config.model_type != "llama":
        raise ExportError(f"only Llama-family base models can be written as GGUF, not {config.model_type!r}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ExportError("base models with attention or MLP biases are not supported by the GGUF export")
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise ExportError(f"rope scaling {rope['rope_type']!r} is not supported by the GGUF export")
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    return writer


def _add_tokenizer(writer: Any, tokenizer: Any, vocab_size: int) -> str:
    """Tokens, types, merges and special ids as `convert_hf_to_gguf.py` writes a GPT-2 style BPE."""
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE" or (backend.get("decoder") or {}).get("type") != "ByteLevel":
        raise ExportError("only byte-level BPE tokenizers (GPT-2 style) can be written as GGUF")
    pre = _pre_tokenizer(backend.get("pre_tokenizer"))
    vocab = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    added, decoder = tokenizer.get_added_vocab(), tokenizer.added_tokens_decoder
    if max(vocab) >= vocab_size:
        raise ExportError(f"the tokenizer has ids up to {max(vocab)}, beyond the model's {vocab_size} embeddings")
    tokens, types = [], []
    for i in range(vocab_size):
        token = vocab.get(i)
        tokens.append(token if token is not None else f"[PAD{i}]")
        if token is None:
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            types.append(gguf.TokenType.CONTROL if decoder[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = backend["model"].get("merges") or []
    writer.add_token_merges([m if isinstance(m, str) else " ".join(p.replace(" ", "\u0120") for p in m)
                             for m in merges])
    for kind in ("bos", "eos", "unk", "pad"):
        if (token_id := getattr(tokenizer, f"{kind}_token_id", None)) is not None:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)) and tokenizer.bos_token_id is not None)
    writer.add_add_eos_token(bool(getattr(tokenizer, "add_eos_token", False)))
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        writer.add_chat_template(tokenizer.chat_template)
    return pre


def _pre_tokenizer(spec: dict[str, Any] | None) -> str:
    """llama.cpp's name for how text is split before BPE; refused rather than guessed, since a wrong
    split silently changes the tokens the model sees."""
    spec = spec or {}
    steps = spec.get("pretokenizers", []) if spec.get("type") == "Sequence" else [spec]
    for pre, wanted in (("gpt-2", [_BYTE_LEVEL]), ("smollm", _SMOLLM)):
        if len(steps) == len(wanted) and all(all(step.get(k) == v for k, v in want.items())
                                              for step, want in zip(steps, wanted, strict=True)):
            return pre
    raise ExportError("the tokenizer's pre-tokenizer is not one the GGUF export knows (gpt-2 or smollm); "
                      "convert the merged model with llama.cpp's convert_hf_to_gguf.py instead")


def _add_tensors(writer: Any, model: Any, dtype: str) -> int:
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    count = 0
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads the output projection from token_embd when output.weight is absent
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"no llama.cpp name for the base model's tensor {hf_name}")
        weight = tensor.detach().float()
        if hf_name.endswith("q_proj.weight"):
            weight = _permute(weight, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            weight = _permute(weight, config.num_key_value_heads)
        writer.add_tensor(gguf_name, _array(weight, dtype))
        count += 1
    return count


def _permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """`LlamaModel.permute` of llama.cpp's converter: within each head, rows (0..d/2, d/2..d) interleave."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _array(weight: torch.Tensor, dtype: str) -> np.ndarray[Any, Any]:
    import numpy as np

    data = weight.numpy()
    # Norms and other vectors stay f32 in an f16 file, as llama.cpp's converter writes them.
    return data.astype(np.float16) if dtype == "f16" and data.ndim > 1 else data.astype(np.float32)
