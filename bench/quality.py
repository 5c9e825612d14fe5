"""BANKING77 quality: the LoRA router against the cheap alternatives, trained on the same examples.

    python bench/quality.py --data ../shared/data/banking77 --task departments --per-class 10 --test 300
    python bench/quality.py --task intents --per-class 10 --alternatives-only     # the baselines alone, fast

Prints and saves JSON (bench/results/quality-<task>-<size>.json) with, side by side: TF-IDF (word
and char n-grams) linear SVM, MiniLM-L6 embeddings + logistic regression, MiniLM-L6 fine-tuned end
to end with a linear head, and the LoRA router (accuracy, macro-F1, single-query latency, training
throughput).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from classifier.routing.metrics import classification_metrics
from trainer.alternatives import fit_minilm_finetuned, fit_minilm_logreg, fit_tfidf_svm


def load(data: Path, task: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    departments = json.loads((data / "departments.json").read_text())

    def rows(name: str) -> list[tuple[str, str]]:
        with (data / name).open(newline="") as handle:
            return [(r["text"], departments[r["category"]] if task == "departments" else r["category"])
                    for r in csv.DictReader(handle)]

    return rows("train.csv"), rows("test.csv")


def sample_train(train: list[tuple[str, str]], per_class: int | None, seed: int) -> list[tuple[str, str]]:
    if per_class is None:
        return train
    rng, by_label = random.Random(seed), {}
    for text, label in train:
        by_label.setdefault(label, []).append(text)
    return [(t, label) for label, texts in sorted(by_label.items())
            for t in rng.sample(texts, min(per_class, len(texts)))]


def tfidf_svm(train, test):
    return _alternative(fit_tfidf_svm, train, test)


def minilm_logreg(train, test):
    return _alternative(fit_minilm_logreg, train, test)


def minilm_finetuned(train, test, seed: int = 0):
    return _alternative(lambda examples: fit_minilm_finetuned(examples, seed=seed), train, test)


def _alternative(fit, train, test):
    fitted = fit(train)
    predicted = fitted.predict([t for t, _ in test])
    return predicted, fitted.fit_seconds, _latency(lambda t: fitted.predict([t]), test)


def lora_router(train, test, labels, args):
    """Trained as the trainer trains it (trainer/candidate.py: the calibration fold held out, the head
    and temperature fitted after the LoRA), with the recipe's overrides from the command line."""
    from trainer.candidate import train_router_on_pairs
    from trainer.config import TrainConfig

    config = replace(TrainConfig(), **{k: v for k, v in {"epochs": args.epochs, "learning_rate": args.lr,
                                                           "lora_r": args.rank}.items() if v is not None})
    if args.rank is not None:
        config = replace(config, lora_alpha=2 * args.rank)
    router, result, *_ = train_router_on_pairs(train, labels, cache_dir=Path(args.home) / "cache", config=config)
    predicted = [c.department for c in router.classify_batch([t for t, _ in test])]
    latency = _latency(router.classify, test)
    return predicted, result, latency


def _latency(predict_one, test, n: int = 40) -> float:
    times = []
    for text, _ in test[:n]:
        started = time.perf_counter()
        predict_one(text)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times[3:] or times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parent.parent.parent / "shared/data/banking77"
    parser.add_argument("--data", type=Path, default=default_data)
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

    train_all, test_all = load(args.data, args.task)
    train = sample_train(train_all, args.per_class, args.seed)
    random.Random(args.seed).shuffle(train)
    test = random.Random(args.seed + 1).sample(test_all, args.test) if args.test else test_all
    labels = sorted({y for _, y in train_all})
    y_true = [y for _, y in test]

    def summary(predicted, **extra):
        m = classification_metrics(y_true, predicted, labels=labels)
        return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4), **extra}

    size = f"{args.per_class}-per-class" if args.per_class else "full"
    report = {"task": args.task, "train_examples": len(train), "test_queries": len(test), "size": size,
              "labels": len(labels), "machine": f"{__import__('os').cpu_count()} CPU cores", "results": {}}
    predicted, fit_s, latency = tfidf_svm(train, test)
    report["results"]["tfidf_svm"] = summary(predicted, fit_s=round(fit_s, 2), latency_ms_median=latency)
    print(json.dumps({"tfidf_svm": report["results"]["tfidf_svm"]}), flush=True)
    predicted, fit_s, latency = minilm_logreg(train, test)
    report["results"]["minilm_logreg"] = summary(predicted, fit_s=round(fit_s, 2), latency_ms_median=latency)
    print(json.dumps({"minilm_logreg": report["results"]["minilm_logreg"]}), flush=True)
    predicted, fit_s, latency = minilm_finetuned(train, test, seed=args.seed)
    report["results"]["minilm_finetuned"] = summary(predicted, fit_s=round(fit_s, 2), latency_ms_median=latency)
    print(json.dumps({"minilm_finetuned": report["results"]["minilm_finetuned"]}), flush=True)
    if not args.alternatives_only:
        predicted, result, latency = lora_router(train, test, labels, args)
        report["results"]["lora_router"] = summary(
            predicted, latency_ms_median=latency, train_s=round(result.seconds, 1),
            train_examples_per_s=round(result.examples_per_second, 2), final_loss=round(result.final_loss, 4),
            config=result.config.to_dict())
    out = Path(__file__).resolve().parent / "results" / f"quality-{args.task}-{size}-{len(test)}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
