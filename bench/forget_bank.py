"""What forgetting costs the served router: accuracy with N of its bank's rows dropped, as `forget` drops them.

    python -m bench.forget_bank                               # trains on the bundled sample, then drops 1, 10, 100
    python -m bench.forget_bank --adapter .switchboard/adapters/run0001-…   # an adapter already trained

A forget rewrites the bank (`scope_bank.safetensors`) without the forgotten messages' rows
(classifier/routing/bank_rows.py); the LoRA weights, the head and the calibration stay. The bank
feeds two reads of the served answer: the neighbour vote (at the share the calibration fold chose;
none on a small fold) and, without a learned out-of-scope class, the distance signal behind "none of
these". So the test queries are scored once (the label scores and the head, which no forget
changes), and each bank, whole, less N random rows (`--seeds` draws each) or empty (an older bank
that cannot be mapped goes whole), is read on top of that score as the router reads it. Prints and
saves JSON to bench/results/forget-bank.json (or `--out`).
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.harness import ROOT, save

SAMPLE = ROOT / "data" / "sample"


def pairs(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as handle:
        return [(row["text"], row.get("label") or row["category"]) for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--train", type=Path, default=SAMPLE / "train.csv", help="CSV with text,label to train on")
    parser.add_argument("--test", type=Path, default=SAMPLE / "eval.csv", help="CSV with text,label to score")
    parser.add_argument("--adapter", type=Path, help="an adapter folder to load instead of training one")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--home", type=Path, default=ROOT / ".switchboard", help="its cache/ holds the base model")
    parser.add_argument("--epochs", type=float, default=3.0, help="the trainer's TrainConfig.epochs")
    parser.add_argument("--min-steps", type=int, default=240, help="the trainer's TrainConfig.min_steps; fewer "
                        "trains a weaker router sooner, on a machine too slow for the shipped recipe")
    parser.add_argument("--drop", type=int, nargs="+", default=[1, 10, 100], help="bank rows dropped")
    parser.add_argument("--seeds", type=int, default=5, help="random draws of the dropped rows for each N")
    parser.add_argument("--out", type=Path, help="where to save (default bench/results/forget-bank.json)")
    args = parser.parse_args()

    import torch

    from classifier.routing.head import blend
    from classifier.routing.metrics import classification_metrics
    from classifier.routing.neighbours import neighbour_vote

    started = time.perf_counter()
    router = load(args)
    ready_s = time.perf_counter() - started
    assert router.bank is not None and router.bank_labels is not None, "this adapter has no bank with labels"
    bank, bank_labels, share = router.bank, router.bank_labels, router.calibration.vote_weight
    test = pairs(args.test)
    texts, truth = [t for t, _ in test], [y for _, y in test]
    router.calibration = replace(router.calibration, vote_weight=0.0)
    raw = router.score(texts)  # the label scores and the head: what no forget changes
    router.calibration = replace(router.calibration, vote_weight=share)
    labels = router.labels

    def read(keep: torch.Tensor) -> dict[str, Any]:
        router.bank, rows = bank[keep], bank_labels[keep]
        probs = blend(raw.probs, neighbour_vote(raw.hidden, router.bank, rows, len(labels)), share) if share \
            else raw.probs
        answers = router.decide(replace(raw, probs=probs))
        m = classification_metrics(truth, [a.department for a in answers], labels=labels)
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                "none_of_these": sum(a.none_of_these for a in answers) / len(answers),
                "departments": [a.department for a in answers], "none": [a.none_of_these for a in answers]}

    whole = read(torch.ones(len(bank), dtype=torch.bool))
    result: dict[str, Any] = {
        "base_model": args.base_model, "bank_rows": len(bank), "test_queries": len(texts),
        "vote_share": share, "distance_signal": bool(router.calibration.reference_scores),
        "seconds_to_ready": round(ready_s, 1), "whole_bank": _summary(whole), "dropped": {}}
    for n in [d for d in args.drop if d <= len(bank)]:
        runs = []
        for seed in range(args.seeds):
            keep = torch.ones(len(bank), dtype=torch.bool)
            keep[random.Random(seed).sample(range(len(bank)), n)] = False
            runs.append(_changed(read(keep), whole))
        result["dropped"][str(n)] = _mean(runs)
    result["dropped"]["all"] = _changed(read(torch.zeros(len(bank), dtype=torch.bool)), whole)
    save(args.out or "forget-bank", result, args)


def load(args: argparse.Namespace) -> Any:
    """The router with its bank: the adapter given, or one trained on `--train` as the trainer trains."""
    if args.adapter is not None:
        from classifier.routing.router import load_router

        return load_router(args.base_model, cache_dir=args.home / "cache", adapter_dir=args.adapter, name="bench")
    from bench.harness import train_router_on_pairs
    from trainer.config import TrainConfig

    train = pairs(args.train)
    labels = sorted({y for _, y in train})
    config = TrainConfig(epochs=args.epochs, min_steps=args.min_steps)
    return train_router_on_pairs(train, labels, cache_dir=args.home / "cache", base_model=args.base_model,
                                 config=config, progress=False).router


def _summary(read: dict[str, Any]) -> dict[str, float]:
    return {k: round(read[k], 4) for k in ("accuracy", "macro_f1", "none_of_these")}


def _changed(read: dict[str, Any], whole: dict[str, Any]) -> dict[str, float]:
    """The read's scores and how many test answers (department, or none of these) differ from the whole bank's."""
    moved = sum(a != b for a, b in zip(read["departments"], whole["departments"], strict=True))
    flipped = sum(a != b for a, b in zip(read["none"], whole["none"], strict=True))
    return {**_summary(read), "answers_changed": moved, "none_of_these_changed": flipped}


def _mean(runs: list[dict[str, float]]) -> dict[str, float]:
    means = {k: round(statistics.mean(r[k] for r in runs), 4) for k in runs[0]}
    return {**means, "draws": len(runs), "worst_accuracy": min(r["accuracy"] for r in runs)}


if __name__ == "__main__":
    main()
