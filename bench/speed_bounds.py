"""What bounds a single query, measured beside it: `python -m bench.speed --phases bounds`.

A query of ~16 new tokens must read every weight of the model once. On this machine the run
measures: the model's own linear layers back to back on a query-sized input (no attention, norms
or Python around them), from memory and with one layer's weights hot in cache; the arithmetic
floor, those multiplies' FLOPs at the rate a large square product reaches; and the weight bytes
over the rate the cores read a large buffer (CPU). The transformers forward, which served before
the lean Llama, is timed on the same queries, with its largest probability difference from the
lean path.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.harness import time_single_queries
from bench.speed_phases import sync
from bench.speed_setup import queries


def bounds(setup: dict[str, Any], *, device: str, single: int, plain: int) -> dict[str, Any]:
    import torch

    from classifier.model.base_model import LoadOptions, load_base_model
    from classifier.model.serving_model import load_serving_model
    from classifier.routing.prompt import prefix_ids, prompt_ids
    from classifier.routing.router import LoraRouter

    cache, adapter = Path(setup["home"]) / "cache", Path(setup["adapter"])
    options = LoadOptions(device=device)
    model, tokenizer = load_serving_model(setup["base_model"], cache_dir=cache, options=options)
    lean = LoraRouter.from_adapter(base=model, tokenizer=tokenizer, adapter_dir=adapter, name="lean")
    texts = [text for text, _ in queries()]
    new_tokens = round(statistics.fmean(len(prompt_ids(tokenizer, lean.prompt, t)) for t in texts)
                       - len(prefix_ids(tokenizer, lean.prompt)))
    linears = [m for m in lean.model.get_decoder().modules() if isinstance(m, torch.nn.Linear)]
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    layers = lean.model.get_decoder().layers
    first_layer = [m for m in layers[0].modules() if isinstance(m, torch.nn.Linear)]
    flops = 2 * new_tokens * sum(m.weight.numel() for m in linears)
    peak = _peak_matmul_tflops(device, linears[0].weight.dtype)
    out: dict[str, Any] = {
        "new_tokens_per_query": new_tokens, "linear_weight_mb": round(weight_bytes / 2**20, 1),
        "matmul_floor_ms": _matmul_floor_ms(linears, new_tokens, device),
        "matmul_cache_hot_ms": _matmul_floor_ms(first_layer * len(layers), new_tokens, device),
        "matmul_gflop_per_query": round(flops / 1e9, 2), "peak_matmul_tflops": round(peak, 3),
        "matmul_compute_floor_ms": round(flops / (peak * 1e12) * 1000, 2)}
    if device == "cpu":
        bandwidth = _read_bandwidth_gb_s()
        out |= {"read_bandwidth_gb_s": round(bandwidth, 1),
                "weight_stream_floor_ms": round(weight_bytes / (bandwidth * 1e9) * 1000, 1)}
    base, hf_tokenizer = load_base_model(setup["base_model"], cache_dir=cache, options=options)
    hf = LoraRouter.from_adapter(base=base, tokenizer=hf_tokenizer, adapter_dir=adapter, name="transformers")
    sample = texts[:plain]
    a = _probabilities(lean, sample)
    b = _probabilities(hf, sample)
    out["transformers_forward"] = {
        "single_query_ms_median": round(statistics.median(time_single_queries(hf.classify, texts[:single])), 2),
        "lean_single_query_ms_median": round(statistics.median(time_single_queries(lean.classify, texts[:single])), 2),
        "max_probability_difference": float((a - b).abs().max()),
        "same_department": int((a.argmax(1) == b.argmax(1)).sum()), "queries_compared": len(sample)}
    return out


def _matmul_floor_ms(linears: list[Any], tokens: int, device: str) -> float:
    import torch

    inputs = {m.in_features: torch.randn(tokens, m.in_features, dtype=m.weight.dtype, device=m.weight.device)
              for m in linears}
    passes = []
    with torch.inference_mode():
        for _ in range(25):
            sync(device)
            started = time.perf_counter()
            for m in linears:
                torch.nn.functional.linear(inputs[m.in_features], m.weight)
            sync(device)
            passes.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(passes[5:]), 2)


def _peak_matmul_tflops(device: str, dtype: Any) -> float:
    """What one large square product reaches in the model's dtype: the arithmetic roofline here."""
    import torch

    size = 8192 if device == "cuda" else 2048
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    seconds = []
    for _ in range(8):
        sync(device)
        started = time.perf_counter()
        a @ b
        sync(device)
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / min(seconds[2:]) / 1e12


def _read_bandwidth_gb_s() -> float:
    import torch

    buffer = torch.ones(2**27)  # 512 MiB, larger than any cache here
    seconds = []
    for _ in range(6):
        started = time.perf_counter()
        buffer.sum()
        seconds.append(time.perf_counter() - started)
    return buffer.numel() * 4 / min(seconds[1:]) / 1e9


def _probabilities(router: Any, texts: list[str]) -> Any:
    import torch

    return torch.tensor([[c.scores[label] for label in router.labels] for c in router.classify_batch(texts)])
