"""The phases of `python -m bench.speed`, each run in its own process so its peak memory is its own."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, summary, time_single_queries
from bench.speed_setup import queries, training_examples


def _memory(device: str) -> dict[str, float]:
    """Peak resident memory so far, and resident memory now (what a long-running process keeps)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1]) if Path("/proc/self/statm").exists() else 0
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "rss_now_mb": round(resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)}
    if device == "cuda":
        import torch

        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def serve(setup: dict[str, Any], *, device: str, single: int, plain: int, batch: int) -> dict[str, Any]:
    """The production serving path: the active adapter merged on its base, every forward on one thread."""
    import torch

    from classifier.model.base_model import LoadOptions
    from classifier.model.serving_model import load_serving_model
    from classifier.routing.prompt import prompt_ids
    from classifier.routing.router import load_router
    from classifier.routing.scoring import score_labels, score_labels_plain
    from classifier.serving.active_router import ActiveModelRouter

    cache, options = Path(setup["home"]) / "cache", LoadOptions(device=device)
    base, tokenizer = load_serving_model(setup["base_model"], cache_dir=cache, options=options)
    adapter = setup["adapter"]
    router = ActiveModelRouter(base=base, tokenizer=tokenizer, base_model_name=setup["base_model"],
                               lookup=lambda: (1, adapter, setup["base_model"]))
    router.refresh()
    texts = [text for text, _ in queries()]
    single_ms = time_single_queries(router.classify, texts[:single])
    sync(device)
    serving_memory = _memory(device)  # what a bot answering one query at a time holds
    started = time.perf_counter()
    router.classify_batch(texts, batch_size=batch)
    sync(device)
    batched_s = time.perf_counter() - started
    batched_memory = _memory(device)
    router.stop()
    del router, base

    # The plain path's check looks inside a router: the same adapter merged into a base of its own
    # (the served one already holds it), loaded after the memory figures above were taken.
    inner = load_router(setup["base_model"], cache_dir=cache, adapter_dir=Path(adapter), name="inspected",
                        options=options)
    time.sleep(0.5)  # let the served router's OpenMP workers go idle before timing from this thread
    pad = inner.tokenizer.pad_token_id
    prompts = [prompt_ids(inner.tokenizer, inner.prompt, text) for text in texts[:plain]]
    fast = score_labels(inner.model, inner.trie, prompts, pad_token_id=pad)
    started = time.perf_counter()
    reference = score_labels_plain(inner.model, inner.trie, prompts, pad_token_id=pad)
    plain_ms = (time.perf_counter() - started) * 1000 / max(1, len(prompts))
    tokens = statistics.fmean(len(prompt_ids(inner.tokenizer, inner.prompt, t)) for t in texts)
    return {
        "single_query_ms": summary(single_ms, digits=2),
        "batched": {"queries": len(texts), "batch_size": batch, "queries_per_s": round(len(texts) / batched_s, 1),
                    "prompt_tokens_per_s": round(len(texts) * tokens / batched_s)},
        "plain_path": {"queries": len(prompts), "ms_per_query": round(plain_ms, 2),
                       "max_probability_difference": float((fast - reference).abs().max()) if prompts else None,
                       "same_department": int((fast.argmax(1) == reference.argmax(1)).sum()) if prompts else None},
        "mean_prompt_tokens": round(tokens, 1), "torch_threads": torch.get_num_threads(),
        "memory_single_queries": serving_memory, "memory_after_batches": batched_memory,
    }


def train(setup: dict[str, Any], *, device: str, n: int, epochs: float, data: Path | None,
          precision: str = "auto") -> dict[str, Any]:
    from dataclasses import replace

    from classifier.model.base_model import LoadOptions, load_base_model
    from classifier.routing.prompt import PromptFormat, label_ids, prompt_ids
    from trainer.config import TrainConfig
    from trainer.lora import train_lora

    config = replace(TrainConfig(), epochs=epochs, min_steps=0, precision=precision)
    base, tokenizer = load_base_model(setup["base_model"], cache_dir=Path(setup["home"]) / "cache",
                                      options=LoadOptions(device=device, precision=precision))
    examples = training_examples(n, data)
    prompt = PromptFormat()
    tokens = sum(len(prompt_ids(tokenizer, prompt, t)) + len(label_ids(tokenizer, prompt, lab)) for t, lab in examples)
    result = train_lora(model=base, tokenizer=tokenizer, examples=examples, prompt=prompt, config=config,
                        progress=False)
    return {"examples": n, "epochs": result.config.epochs, "batch_size": result.config.batch_size,
            "precision": precision, "steps": result.steps, "wall_s": round(result.seconds, 1),
            "examples_per_s": round(n * result.config.epochs / result.seconds, 2),
            "tokens_per_s": round(tokens * result.config.epochs / result.seconds), **_memory(device)}


def startup(setup: dict[str, Any]) -> dict[str, Any]:
    """Process start to first classification, as a user runs it: `switchboard classify`, cache warm."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SLACK_", "OPENAI_"))}
    env |= {"SWITCHBOARD_HOME": setup["home"], "SWITCHBOARD_BASE_MODEL": setup["base_model"]}
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cli.main", "classify", "my card has not arrived yet", "--json"],
                       env=env, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return {"classify_command_s": {"first": round(times[0], 2), "median": round(statistics.median(times), 2)}}


def reference(*, single: int, data: Path | None) -> dict[str, Any]:
    """TF-IDF (word + char n-grams) + linear SVM on the same queries: the cheap alternative's speed."""
    from trainer.alternatives import fit_tfidf_svm

    fitted = fit_tfidf_svm(training_examples(3000, data))
    texts = [text for text, _ in queries()]
    single_ms = []
    for text in texts[:single]:
        started = time.perf_counter()
        fitted.predict([text])
        single_ms.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    fitted.predict(texts)
    return {"single_query_ms": summary(single_ms, digits=2),
            "batched_queries_per_s": round(len(texts) / (time.perf_counter() - started), 1), **_memory("cpu")}
