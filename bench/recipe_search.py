"""Recipe search for the LoRA router: many training recipes, one data sample, one test sample.

    python -m bench.recipe_search --task departments --per-class 10 --test 300 \
        --grid '[{"learning_rate": 1e-3}, {"learning_rate": 2e-3, "epochs": 6, "batch_size": 8}]'

Each recipe overrides `TrainConfig` fields; keys starting with `prompt.` override `PromptFormat`.
The cheap alternatives are trained once on the same examples, so every line compares like with
like. Prints one JSON line per recipe and saves them all to bench/results/recipes-<task>-<size>-seed<N>.json
(appending to earlier runs of the same task, size and seed, so a search can be resumed).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.datasets import SHARED, Pairs, banking77, sample_per_class
from bench.harness import RESULTS, load_result, save
from classifier.routing.metrics import classification_metrics
from trainer.alternatives import fit_minilm_logreg, fit_tfidf_svm


def run_recipe(recipe: dict[str, Any], train: Pairs, test: Pairs, labels: list[str], home: Path) -> dict[str, Any]:
    from classifier.model.base_model import load_base_model
    from classifier.routing.prompt import PromptFormat
    from classifier.routing.router import LoraRouter
    from trainer.config import TrainConfig
    from trainer.lora import train_lora

    prompt = PromptFormat(**{k.removeprefix("prompt."): v for k, v in recipe.items() if k.startswith("prompt.")})
    config = replace(TrainConfig(), **{k: v for k, v in recipe.items() if not k.startswith("prompt.")})
    model, tokenizer = load_base_model("smollm2-135m", cache_dir=home / "cache")
    result = train_lora(model=model, tokenizer=tokenizer, examples=train, prompt=prompt, config=config, progress=False)
    router = LoraRouter(model=result.model.get_base_model(), tokenizer=tokenizer, labels=labels, prompt=prompt,
                        name="recipe")
    started = time.perf_counter()
    predicted = [c.department for c in router.classify_batch([t for t, _ in test])]
    batch_ms = (time.perf_counter() - started) * 1000 / len(test)
    m = classification_metrics([y for _, y in test], predicted, labels=labels)
    return {"recipe": recipe, "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
            "train_s": round(result.seconds, 1), "train_examples_per_s": round(result.examples_per_second, 2),
            "final_loss": round(result.final_loss, 4), "batch_ms_per_query": round(batch_ms, 1),
            "resolved": {"batch_size": result.config.batch_size, "epochs": result.config.epochs, "steps": result.steps}}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "banking77")
    parser.add_argument("--task", choices=["intents", "departments"], default="departments")
    parser.add_argument("--per-class", type=int)
    parser.add_argument("--test", type=int)
    parser.add_argument("--seed", type=int, default=0, help="seed of the training and test samples")
    parser.add_argument("--grid", required=True, help="JSON list of recipes, or @file holding one")
    parser.add_argument("--home", type=Path, default=Path(".switchboard"))
    args = parser.parse_args()
    grid = json.loads(Path(args.grid[1:]).read_text() if args.grid.startswith("@") else args.grid)

    train_all, test_all = banking77(args.data, args.task)
    train = sample_per_class(train_all, args.per_class, args.seed)
    random.Random(args.seed).shuffle(train)
    test = random.Random(args.seed + 1).sample(test_all, args.test) if args.test else test_all
    labels = sorted({y for _, y in train_all})
    y_true = [y for _, y in test]
    size = f"{args.per_class}-per-class" if args.per_class else "full"
    name = f"recipes-{args.task}-{size}-seed{args.seed}"
    report = load_result(name) if (RESULTS / f"{name}.json").exists() else {
        "task": args.task, "size": size, "seed": args.seed, "train_examples": len(train), "test_queries": len(test),
        "alternatives": {}, "recipes": []}
    if not report["alternatives"]:
        for fit in (fit_tfidf_svm, fit_minilm_logreg):
            fitted = fit(train)
            predicted = fitted.predict([t for t, _ in test])
            m = classification_metrics(y_true, predicted, labels=labels)
            report["alternatives"][fitted.name] = {"accuracy": round(m["accuracy"], 4),
                                                   "macro_f1": round(m["macro_f1"], 4)}
        print(json.dumps(report["alternatives"]), flush=True)
    for recipe in grid:
        line = run_recipe(recipe, train, test, labels, args.home)
        print(json.dumps(line), flush=True)
        report["recipes"].append(line)
        save(name, report, args, show=False)


if __name__ == "__main__":
    main()
