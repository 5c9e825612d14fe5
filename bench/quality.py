"""BANKING77 quality: the LoRA router against the cheap alternatives, trained on the same examples.

    python -m bench.quality --data ../shared/data/banking77 --task departments --per-class 10 --test 300
    python -m bench.quality --task intents --per-class 10 --alternatives-only     # the baselines alone, fast

Prints and saves JSON (bench/results/quality-<task>-<size>.json) with, side by side: TF-IDF (word
and char n-grams) linear SVM, MiniLM-L6 embeddings + logistic regression, MiniLM-L6 fine-tuned end
to end with a linear head, and the LoRA router (accuracy, macro-F1, single-query latency, training
throughput).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.datasets import SHARED, Pairs, banking77, sample_per_class
from bench.harness import save, time_single_queries, train_router_on_pairs
from classifier.routing.metrics import classification_metrics
from trainer.alternatives import FittedAlternative, fit_minilm_finetuned, fit_minilm_logreg, fit_tfidf_svm

if TYPE_CHECKING:
    from trainer.lora import TrainResult

Predicted = tuple[list[str], float, float]  # (answers, fit seconds, median single-query ms)


def tfidf_svm(train: Pairs, test: Pairs) -> Predicted:
    return _alternative(fit_tfidf_svm, train, test)


def minilm_logreg(train: Pairs, test: Pairs) -> Predicted:
    return _alternative(fit_minilm_logreg, train, test)


def minilm_finetuned(train: Pairs, test: Pairs, seed: int = 0) -> Predicted:
    return _alternative(lambda examples: fit_minilm_finetuned(examples, seed=seed), train, test)


def _alternative(fit: Callable[[Pairs], FittedAlternative], train: Pairs, test: Pairs) -> Predicted:
    fitted = fit(train)
    predicted = fitted.predict([t for t, _ in test])
    return predicted, fitted.fit_seconds, _latency(lambda t: fitted.predict([t]), test)


def lora_router(train: Pairs, test: Pairs, labels: list[str], args: argparse.Namespace
                ) -> tuple[list[str], TrainResult, float]:
    """Trained as the trainer trains it (trainer/candidate.py: the calibration fold held out, the head
    and temperature fitted after the LoRA), with the recipe's overrides from the command line."""
    from trainer.config import TrainConfig

    config = replace(TrainConfig(), **{k: v for k, v in {"epochs": args.epochs, "learning_rate": args.lr,
                                                           "lora_r": args.rank}.items() if v is not None})
    if args.rank is not None:
        config = replace(config, lora_alpha=2 * args.rank)
    router, result, *_ = train_router_on_pairs(train, labels, cache_dir=Path(args.home) / "cache", config=config)
    predicted = [c.department for c in router.classify_batch([t for t, _ in test])]
    latency = _latency(router.classify, test)
    return predicted, result, latency


def _latency(predict_one: Callable[[str], object], test: Pairs, n: int = 40) -> float:
    """The median over the first n test queries, the first three (warming up) left out."""
    times = time_single_queries(predict_one, [t for t, _ in test[:n]], warmup=0)
    return round(statistics.median(times[3:] or times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "banking77")
    parser.add_argument("--task", choices=["intents", "departments"], default="departments")
    parser.add_argument("--per-class", type=int, help="examples per class (default: the full training set)")
    parser.add_argument("--test", type=int, help="score a seeded random sample of this many test queries")
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--rank", type=int)
    parser.add_argument("--alternatives-only", action="store_true", help="skip the LoRA router")
    parser.add_argument("--home", default=".switchboard", help="where the converted embedded model is cached")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_all, test_all = banking77(args.data, args.task)
    train = sample_per_class(train_all, args.per_class, args.seed)
    random.Random(args.seed).shuffle(train)
    test = random.Random(args.seed + 1).sample(test_all, args.test) if args.test else test_all
    labels = sorted({y for _, y in train_all})
    y_true = [y for _, y in test]

    def summary(predicted: list[str], **extra: Any) -> dict[str, Any]:
        m = classification_metrics(y_true, predicted, labels=labels)
        return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4), **extra}

    size = f"{args.per_class}-per-class" if args.per_class else "full"
    results: dict[str, Any] = {}
    report = {"task": args.task, "train_examples": len(train), "test_queries": len(test), "size": size,
              "labels": len(labels), "results": results}
    contenders: list[tuple[str, Callable[[Pairs, Pairs], Predicted]]] = [
        ("tfidf_svm", tfidf_svm), ("minilm_logreg", minilm_logreg),
        ("minilm_finetuned", lambda train, test: minilm_finetuned(train, test, seed=args.seed))]
    for name, contender in contenders:
        predicted, fit_s, latency = contender(train, test)
        results[name] = summary(predicted, fit_s=round(fit_s, 2), latency_ms_median=latency)
        print(json.dumps({name: results[name]}), flush=True)
    if not args.alternatives_only:
        predicted, result, latency = lora_router(train, test, labels, args)
        results["lora_router"] = summary(
            predicted, latency_ms_median=latency, train_s=round(result.seconds, 1),
            train_examples_per_s=round(result.examples_per_second, 2), final_loss=round(result.final_loss, 4),
            config=result.config.to_dict())
    save(f"quality-{args.task}-{size}-{len(test)}", report, args)


if __name__ == "__main__":
    main()
