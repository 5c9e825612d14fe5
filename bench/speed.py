"""Speed and memory of the router, against the TF-IDF + linear SVM reference in the same run.

    python -m bench.speed                                                  # CPU, embedded model
    python -m bench.speed --device cuda --model llama-1b-shape \\
        --train-sizes 1000 10000 --qlora                                   # the GPU host

Phases, each in its own process so peak memory is the phase's own:
- serve: single-query latency (median, p95) over BANKING77 test queries and batched throughput,
  on the production path (adapter merged, one model thread); the plain scoring path on a sample,
  with the largest probability difference from the fast path;
- bounds: the floors a single query cannot go under on this machine (its matrix multiplies alone,
  its weight bytes over memory bandwidth), and the transformers forward timed on the same queries;
- startup: `switchboard classify` from process start to answer, the model cache warm;
- train: retraining wall time, examples and tokens per second, for each --train-sizes;
- qlora (GPU only): the same on 4-bit NF4 weights through bitsandbytes, with its peak memory;
- reference: TF-IDF + linear SVM latency and throughput on the same queries.
`--model llama-1b-shape` is a model of Llama-3.2-1B's exact dimensions with random weights;
`--model tiny-llama-shape` the same layout shrunk, to try the GPU path's code anywhere.
Prints and saves JSON to bench/results/speed-<device>-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import ROOT, save

FLOPS_PER_TOKEN = {"llama-1b-shape": 2 * 1.24e9}  # the figure: about 2 x 1.24 GFLOP a token


def run_phase(args: argparse.Namespace, phase: str, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.speed", "--phase", phase, "--work", str(args.work),
               "--device", args.device, "--model", args.model, "--single", str(args.single),
               "--plain", str(args.plain), "--batch", str(args.batch)]
    if args.data:
        command += ["--data", str(args.data)]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    print(f"... {phase} {extra or ''}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_phase(args: argparse.Namespace) -> dict[str, Any]:
    from bench import speed_bounds, speed_phases

    setup = json.loads((args.work / "setup.json").read_text())
    if args.phase == "serve":
        return speed_phases.serve(setup, device=args.device, single=args.single, plain=args.plain, batch=args.batch)
    if args.phase == "bounds":
        return speed_bounds.bounds(setup, device=args.device, single=args.single, plain=args.plain)
    if args.phase == "startup":
        return speed_phases.startup(setup)
    if args.phase in ("train", "qlora"):
        return speed_phases.train(setup, device=args.device, n=args.n, epochs=args.epochs, data=args.data,
                                  precision="4bit" if args.phase == "qlora" else "auto")
    return speed_phases.reference(single=args.single, data=args.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", choices=["embedded", "llama-1b-shape", "tiny-llama-shape"], default="embedded")
    parser.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--plain", type=int, default=100, help="queries through the plain scoring path")
    parser.add_argument("--batch", type=int, default=64, help="batch size for throughput")
    parser.add_argument("--train-sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--qlora", action="store_true", help="also train on 4-bit weights (GPU only)")
    parser.add_argument("--phases", nargs="*", default=["serve", "bounds", "startup", "train", "reference"],
                        help="run only these (the JSON file is then named after them)")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of bench/results/")
    parser.add_argument("--data", type=Path, help="a BANKING77 folder with train.csv (default: the bundled test split)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".switchboard" / "cache", help="converted embedded model")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(one_phase(args)))
        return

    from bench.speed_setup import prepare

    args.work = Path(tempfile.mkdtemp(prefix="switchboard-speed-"))
    setup = prepare(args.work, args.model, args.cache)
    (args.work / "setup.json").write_text(json.dumps(setup))
    result: dict[str, Any] = {"device": args.device, "model": args.model}
    phases = set(args.phases)
    if "serve" in phases:
        result["serve"] = run_phase(args, "serve")
    if "bounds" in phases:
        result["bounds"] = run_phase(args, "bounds")
    if "startup" in phases:
        result["startup"] = run_phase(args, "startup")
    if "train" in phases:
        result["train"] = [run_phase(args, "train", n=n, epochs=args.epochs) for n in args.train_sizes]
    if args.qlora:
        result["qlora"] = run_phase(args, "qlora", n=args.train_sizes[0], epochs=1)
    if "reference" in phases:
        result["reference_tfidf_svm"] = run_phase(args, "reference")
    serve, ref = result.get("serve", {"error": "not run"}), result.get("reference_tfidf_svm", {"error": "not run"})
    if "error" not in serve and "error" not in ref:
        result["ratio_to_reference"] = {
            "single_query_median": _ratio(serve["single_query_ms"]["median"], ref["single_query_ms"]["median"]),
            "batched_throughput": _ratio(ref["batched_queries_per_s"], serve["batched"]["queries_per_s"])}
    if args.model in FLOPS_PER_TOKEN and "error" not in serve:
        achieved = serve["batched"]["prompt_tokens_per_s"] * FLOPS_PER_TOKEN[args.model]
        result["roofline"] = {"achieved_tflops_batched": round(achieved / 1e12, 1),
                              "prefill_bound_tokens_per_s_at_800_tflops": round(800e12 / FLOPS_PER_TOKEN[args.model])}
        if peak := result.get("bounds", {}).get("peak_matmul_tflops"):
            result["roofline"] |= {"peak_matmul_tflops_measured": peak,
                                   "prefill_bound_tokens_per_s_at_measured_peak":
                                       round(peak * 1e12 / FLOPS_PER_TOKEN[args.model])}
    suffix = "" if phases >= {"serve", "bounds", "startup", "train", "reference"} else "-" + "-".join(sorted(phases))
    save(args.out or f"speed-{args.device}-{args.model}{suffix}", result, args)


def _ratio(a: float, b: float) -> float:
    """a / b to three significant digits: one decimal place wrote a router twenty times faster than TF-IDF as 0.0."""
    return float(f"{a / b:.3g}")


if __name__ == "__main__":
    main()
