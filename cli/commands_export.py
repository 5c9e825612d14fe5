"""`export-model ID --gguf FILE`: a registered model, merged, as a GGUF file for llama.cpp and Ollama."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.compose import open_context
from cli.output import UserError, emit


def register(sub: Any) -> None:
    p = sub.add_parser("export-model", help="write a model (adapter merged into the base) as a GGUF file that "
                                            "llama.cpp and Ollama load")
    p.add_argument("id", type=int, help="the model's id (see `switchboard models`)")
    p.add_argument("--gguf", type=Path, required=True, metavar="FILE", help="the GGUF file to write")
    p.add_argument("--dtype", choices=["f16", "f32"], default="f16",
                   help="weight precision: f16 (default, half the size) or f32 (the merged weights exactly)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=export_model)


def export_model(args: argparse.Namespace) -> int:
    from classifier.routing.adapters import check_adapter_dir
    from classifier.serving.gguf_export import ExportError, export_gguf
    from store.examples import StoreError
    from store.registry import get_model

    target: Path = args.gguf
    if target.is_dir():
        raise UserError(f"{target} is a folder; give the GGUF file's name")
    if target.exists() and not args.force:
        raise UserError(f"{target} exists already; pass --force to replace it")
    if not target.parent.is_dir():
        raise UserError(f"folder {target.parent} does not exist")
    ctx = open_context()
    with ctx.sessions() as session:
        try:
            model = get_model(session, model_id=args.id)
        except StoreError:
            raise UserError(f"no model with id {args.id} (see `switchboard models`)") from None
    adapter_dir = Path(model.adapter_path)
    if not adapter_dir.is_dir():
        raise UserError(f"model {model.id}'s adapter folder {adapter_dir} is missing")
    check_adapter_dir(adapter_dir)  # an incomplete folder is refused before the base model loads
    try:
        result = export_gguf(adapter_dir=adapter_dir, base_model=model.base_model, cache_dir=ctx.settings.cache_dir,
                             target=target, dtype=args.dtype, name=f"switchboard model {model.id}",
                             model_id=model.id)
    except ExportError as exc:
        raise UserError(f"cannot export model {model.id}: {exc}") from None
    except OSError as exc:  # a full disk, a file-size limit, a folder gone read-only: nothing is left behind
        raise UserError(f"could not write {target} ({exc.strerror or exc}); nothing was written") from None
    payload = {"path": str(result.path), "bytes": result.size_bytes, "model": model.id, "dtype": result.dtype,
               "tensors": result.tensors, "departments": result.labels, "base_model": model.base_model,
               "pre_tokenizer": result.pre_tokenizer}
    text = (f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, {result.dtype}, {result.tensors} tensors): "
            f"model {model.id}, departments {', '.join(result.labels)}")
    emit(args.json, payload, text)
    return 0
