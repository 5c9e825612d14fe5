"""What a candidate in shadow costs per live message, on the embedded model on CPU.

    PYTHONPATH=. .venv/bin/python bench/shadow_latency.py --messages 200

Trains a first adapter on the bundled sample (1 epoch: latency does not depend on how well it
learned) and makes a candidate from it (its LoRA factors perturbed: the same shapes, other
answers). The served router (`ActiveModelRouter`) then classifies each message with the active
model, as the reply does, and right after with the candidate through `classify_shadow`, as the bot
does once the reply is posted; both on the one model thread, as in production. The baseline in the
same run is the active model's own time per message: the shadow's cost is the ratio of the two
together to it. Prints and saves JSON to bench/results/shadow-latency.json.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import save  # noqa: E402
from bench.slack_latency import summary, texts, train_first_model  # noqa: E402


def perturbed_copy(adapter: Path, folder: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, folder)
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    save_file({k: v + 0.02 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in tensors.items()},
              str(folder / "adapter_model.safetensors"))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    import torch

    from classifier.serving import ActiveModelRouter
    from classifier.serving_model import load_serving_model

    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        began = time.perf_counter()
        settings, adapter = train_first_model(home)
        trained_s = time.perf_counter() - began
        candidate = perturbed_copy(Path(adapter), Path(scratch) / "candidate")
        base, tokenizer = load_serving_model(settings.base_model, cache_dir=settings.cache_dir)
        router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=settings.base_model,
                                   lookup=lambda: (1, adapter, settings.base_model), poll_seconds=3600)
        router.refresh()
        queries = texts(ROOT / "data/sample/eval_mixed.csv", args.messages + args.warmup)
        began = time.perf_counter()
        router.classify_shadow(queries[0], 2, str(candidate))  # the candidate's first message loads it
        first_load_ms = (time.perf_counter() - began) * 1000
        active_ms, shadow_ms, agree = [], [], 0
        for i, text in enumerate(queries):
            t0 = time.perf_counter()
            live = router.classify(text)
            t1 = time.perf_counter()
            shadowed = router.classify_shadow(text, 2, str(candidate))
            t2 = time.perf_counter()
            if i >= args.warmup:
                active_ms.append((t1 - t0) * 1000)
                shadow_ms.append((t2 - t1) * 1000)
                agree += live.department == shadowed.department
        router.stop()
    together = [a + s for a, s in zip(active_ms, shadow_ms, strict=True)]
    result = {
        "bench": "shadow_latency", "model": settings.base_model, "messages": args.messages,
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "active_only_ms": summary(active_ms),
        "shadow_ms": summary(shadow_ms),
        "active_and_shadow_ms": summary(together),
        "cost_ratio_median": round(summary(together)["median"] / summary(active_ms)["median"], 2),
        "candidate_first_message_ms": round(first_load_ms, 1),
        "agreement": round(agree / len(active_ms), 3),
        "training_seconds": round(trained_s, 1),
        "note": "the customer's reply waits only for the active model: the shadow runs after it is posted",
    }
    save(result, "shadow-latency.json")


if __name__ == "__main__":
    main()
