"""What a candidate in shadow costs per live message, on the embedded model on CPU.

    python -m bench.shadow_latency --messages 200

Trains a first adapter on the bundled sample (1 epoch: latency does not depend on how well it
learned) and makes a candidate from it (its LoRA factors perturbed: the same shapes, other
answers). The served router (`ActiveModelRouter`) classifies each message with the active model,
as the reply does; then the candidate classifies them through `classify_shadow`, one at a time and
in the bot's batches (`bot/shadow.py`), on the same model thread, as in production. The baseline in
the same run is the active model's own time per message; the shadow's cost is the ratio of the
two together to it. Prints and saves JSON to bench/results/shadow-latency.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, save, summary, texts, train_first_model
from bot.shadow import SHADOW_BATCH
from core.settings import Settings


def perturbed_copy(adapter: Path, folder: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, folder)
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    save_file({k: v + 0.02 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in tensors.items()},
              str(folder / "adapter_model.safetensors"))
    return folder


def interleaved(router: Any, queries: list[str], candidate: str, size: int) -> tuple[list[float], list[float]]:
    """(the active model's time for each message, each message's share of its shadow batch's time): for
    each batch of `size`, its messages one at a time as the replies go, then the batch as the bot scores
    it, so both see the machine in the same state."""
    active, shadow = [], []
    for start in range(0, len(queries) - size + 1, size):
        batch = queries[start:start + size]
        for text in batch:
            began = time.perf_counter()
            router.classify(text)
            active.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        router.classify_shadow(batch, 2, candidate)
        shadow += [(time.perf_counter() - began) * 1000 / size] * size
    return active, shadow


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="keep the trained store here, and reuse it when it is there")
    args = parser.parse_args()

    from classifier.model.serving_model import load_serving_model
    from classifier.serving.active_router import ActiveModelRouter

    with tempfile.TemporaryDirectory() as scratch:
        home = args.keep or Path(scratch) / "home"
        began = time.perf_counter()
        if (home / "adapters").is_dir():
            settings = Settings(SWITCHBOARD_HOME=home)
            adapter = str(next(p for p in sorted((home / "adapters").iterdir()) if p.is_dir()))
        else:
            settings, adapter = train_first_model(home)
        trained_s = time.perf_counter() - began
        candidate = perturbed_copy(Path(adapter), Path(scratch) / "candidate")
        base, tokenizer = load_serving_model(settings.base_model, cache_dir=settings.cache_dir)
        router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=settings.base_model,
                                   lookup=lambda: (1, adapter, settings.base_model), poll_seconds=3600)
        router.refresh()
        queries = texts(ROOT / "data/sample/eval_mixed.csv", args.messages + args.warmup)
        began = time.perf_counter()
        router.classify_shadow(queries[:1], 2, str(candidate))  # the candidate's first message loads it
        first_load_ms = (time.perf_counter() - began) * 1000
        measured = {size: interleaved(router, queries[args.warmup:], str(candidate), size)
                    for size in (1, SHADOW_BATCH)}
        live = [c.department for c in router.classify_batch(queries[args.warmup:])]
        shadowed = [c.department for c in router.classify_shadow(queries[args.warmup:], 2, str(candidate))]
        router.stop()
    active = summary([ms for size in measured for ms in measured[size][0]])
    result = {
        "model": settings.base_model, "messages": args.messages,
        "active_only_ms": active,
        "shadow_per_message_ms": {f"batch_{size}": summary(shadow) for size, (_, shadow) in measured.items()},
        "model_time_with_shadow_vs_without": {  # each against the active times measured between its batches
            f"batch_{size}": round((summary(live)["median"] + summary(shadow)["median"]) / summary(live)["median"], 2)
            for size, (live, shadow) in measured.items()},
        "product_batch": SHADOW_BATCH,
        "candidate_first_message_ms": round(first_load_ms, 1),
        "agreement": round(sum(a == b for a, b in zip(live, shadowed, strict=True)) / len(live), 3),
        "training_seconds": round(trained_s, 1),
        "note": "the customer's reply waits only for the active model: the shadow runs after it is posted",
    }
    save("shadow-latency", result, args)


if __name__ == "__main__":
    main()
