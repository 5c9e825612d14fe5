"""The few-shot race: levers on the LoRA router, each beside TF-IDF SVM and MiniLM + LR, same examples.

    python -m bench.few_shot --task departments --seeds 0 1 2      # BANKING77, 10 a class, all 3,080 test queries
    python -m bench.few_shot --task domains --seeds 0 1            # CLINC150's 10 domains, 4,500 in-scope test queries
    python -m bench.few_shot --task departments --per-class 0 --seeds 0   # the whole training set (10,003)
    python -m bench.few_shot --task intents --batch-size 4           # a lever on the recipe: -batch-4 in the name

One router is trained per seed exactly as the trainer trains it (`trainer/candidate.py`: the
calibration fold held out, the head and the temperature fitted after the LoRA); the test queries
are scored once, keeping each one's label probabilities and final hidden state; every lever is
then a different read of those:

- `router`: what ships: the label scores and the head's answer mixed at the share the calibration fold
  chose (`trainer/calibrate.py:choose_head_weight`; even on a fold under 30), that mixed with the vote of
  the nearest trained-on messages at the share the fold chose for it (none under 300), then the temperature;
- `router_without_vote`: the same without the vote (what shipped before it);
- `router_even`: the two averaged 50/50 (what shipped before the share was chosen);
- `label_scores`: the probabilities of the label tokens alone (what shipped before the head);
- `head`: the linear head on the final hidden state alone (`classifier/routing/head.py`);
- `head_c0.1`, `head_c10`: the head fitted with ten times the regularisation, or a tenth of it, on every
  labelled example (so do the reads below; the served head takes at most 10,000 trained-on ones and the fold);
- `head_mean`, `head_concat`: the head on the prompt's final states averaged over the message (not the last
  token's), or on both side by side; `router_mean`, `router_concat`: each mixed with the label scores at the
  served share;
- `knn`: retrieval, the vote of the 10 nearest labelled examples (training and fold) in the model's own
  hidden states (`classifier/routing/neighbours.py`); a new label could join this index without a retrain;
- `router+knn`, `router+minilm_logreg`: the router's probabilities averaged with the k-NN vote, or
  with the MiniLM alternative's (stacking the contender in).

Saves bench/results/few-shot-<task>-<size>.json with each seed and the mean over seeds, after each seed;
`--resume` keeps the seeds that file already holds when it was measured on the same commit and arguments.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import SHARED, Pairs, banking77, clinc150, sample_per_class
from bench.harness import RESULTS, commit, save, train_router_on_pairs
from classifier.routing.metrics import classification_metrics
from trainer.config import TrainConfig


def load(task: str, data: Path | None) -> tuple[Pairs, Pairs]:
    if task == "domains":
        train, test, _ = clinc150(data or SHARED / "clinc150")
        return train, test
    return banking77(data or SHARED / "banking77", task)


def router_reads(train: Pairs, texts: list[str], labels: list[str], home: Path, config: TrainConfig
                 ) -> dict[str, Any]:
    """Train as the trainer does (trainer/candidate.py); the test queries' probabilities (the router's,
    its label scores' alone, its head's alone) and hidden states, and the labelled examples' states."""
    from classifier.routing.calibration import with_temperature
    from classifier.routing.head import blend, mixed
    from classifier.routing.neighbours import neighbour_vote

    started = time.perf_counter()
    lora, _, fitted, train_on, fold = train_router_on_pairs(train, labels, cache_dir=home / "cache", config=config,
                                                            progress=False)
    train_s = time.perf_counter() - started
    head, lora.head, lora.bank_labels = lora.head, None, None  # the label scores alone: neither head nor vote
    labelled = train_on + fold
    labelled_scores = lora.score([e.text for e in labelled], pool=True)
    bank = labelled_scores.hidden.numpy()
    started = time.perf_counter()
    raw = lora.score(texts, pool=True)
    score_ms = (time.perf_counter() - started) * 1000 / len(texts)
    temperature, weight = fitted.calibration.temperature, fitted.calibration.head_weight
    vote_weight, without_vote = fitted.calibration.vote_weight, mixed(raw.probs, head, raw.hidden, weight)
    served = without_vote
    started = time.perf_counter()
    vote = neighbour_vote(raw.hidden, fitted.bank, fitted.bank_labels, len(labels))  # timed whether served or not
    vote_ms = (time.perf_counter() - started) * 1000 / len(texts)
    if vote_weight:
        served = blend(served, vote, vote_weight)
    return {"probs": with_temperature(served, temperature).numpy(),
            "without_vote": without_vote.numpy(),
            "even": mixed(raw.probs, head, raw.hidden, 0.5).numpy(),
            "label_scores": raw.probs.numpy(),
            "head": head.probabilities(raw.hidden).numpy() if head is not None else raw.probs.numpy(),
            "hidden": raw.hidden.numpy(), "bank": bank,
            "pooled": _array(raw.pooled), "bank_pooled": _array(labelled_scores.pooled),
            "bank_labels": [labels.index(e.label) for e in labelled],
            "about": {"train_s": round(train_s, 1), "score_ms_per_query": round(score_ms, 2),
                      "trained_on": len(train_on), "fold": len(fold), "head_weight": weight,
                      "vote_weight": vote_weight, "vote_ms_per_query": round(vote_ms, 3), "bank": len(fitted.bank),
                      "temperature": temperature}}


def _array(tensor: Any) -> np.ndarray:
    assert tensor is not None, "scored with pool=True"
    return np.asarray(tensor.numpy())


HEAD_C = (0.1, 10.0)  # the served head's C is 1


def one_seed(train_all: Pairs, test: Pairs, labels: list[str], seed: int, per_class: int, home: Path,
             config: TrainConfig) -> dict[str, Any]:
    import torch

    from classifier.routing.head import blend, fit_head
    from classifier.routing.neighbours import neighbour_vote
    from trainer.alternatives import fit_minilm_logreg, fit_tfidf_svm

    train = sample_per_class(train_all, per_class or None, seed)
    texts, truth = [t for t, _ in test], [y for _, y in test]
    probs: dict[str, np.ndarray] = {}
    for fit in (fit_tfidf_svm, fit_minilm_logreg):
        fitted = fit(train)
        columns = np.asarray(fitted.probabilities(texts))
        probs[fitted.name] = np.zeros((len(texts), len(labels)))
        probs[fitted.name][:, [labels.index(label) for label in fitted.labels]] = columns
    reads = router_reads(train, texts, labels, home, config)
    probs["router"], probs["router_even"] = reads["probs"], reads["even"]
    probs["router_without_vote"] = reads["without_vote"]
    probs["label_scores"], probs["head"] = reads["label_scores"], reads["head"]
    for c in HEAD_C:
        head = fit_head(torch.from_numpy(reads["bank"]), reads["bank_labels"], len(labels), c=c)
        probs[f"head_c{c:g}"] = head.probabilities(torch.from_numpy(reads["hidden"])).numpy() if head else probs["head"]
    for name, x, bank in (("mean", reads["pooled"], reads["bank_pooled"]),
                          ("concat", np.hstack([reads["hidden"], reads["pooled"]]),
                           np.hstack([reads["bank"], reads["bank_pooled"]]))):
        head = fit_head(torch.from_numpy(bank), reads["bank_labels"], len(labels))
        probs[f"head_{name}"] = head.probabilities(torch.from_numpy(x)).numpy() if head else probs["head"]
        label_scores, head_probs = torch.from_numpy(reads["label_scores"]), torch.from_numpy(probs[f"head_{name}"])
        probs[f"router_{name}"] = blend(label_scores, head_probs, reads["about"]["head_weight"]).numpy()
    probs["knn"] = neighbour_vote(torch.from_numpy(reads["hidden"]), torch.from_numpy(reads["bank"]),
                                  torch.tensor(reads["bank_labels"]), len(labels)).numpy()
    for other in ("knn", "minilm_logreg"):
        probs[f"router+{other}"] = blend(torch.from_numpy(probs["router"]), torch.from_numpy(probs[other]), 0.5).numpy()
    scores = {}
    for name, p in probs.items():
        m = classification_metrics(truth, [labels[i] for i in p.argmax(1)], labels=labels)
        scores[name] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
    print(json.dumps({"seed": seed, **scores, "router_about": reads["about"]}), flush=True)
    return {"seed": seed, "train_examples": len(train), "results": scores, "router": reads["about"]}


def finished_seeds(result_name: str, args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    """The seeds a saved run of this commit with these arguments (its seeds aside) finished, by seed."""
    path = RESULTS / f"{result_name}.json"
    if not path.is_file():
        return {}
    envelope = json.loads(path.read_text())
    asked = {k: v for k, v in json.loads(json.dumps(vars(args), default=str)).items() if k not in ("seeds", "resume")}
    saved = {k: v for k, v in (envelope.get("arguments") or {}).items() if k not in ("seeds", "resume")}
    if envelope.get("commit") != commit() or saved != asked:
        print(f"not resuming: {path} was measured on {envelope.get('commit')} with {saved}", file=sys.stderr)
        return {}
    return {run["seed"]: run for run in envelope["result"]["runs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--task", choices=["departments", "intents", "domains"], default="departments")
    parser.add_argument("--data", type=Path, help="the data set's folder (default: ../shared/data/...)")
    parser.add_argument("--per-class", type=int, default=10, help="examples a label; 0: the whole training set")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test", type=int, help="a seeded sample of this many test queries (default: all)")
    parser.add_argument("--home", type=Path, default=Path(".switchboard"), help="the embedded model's cache")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                        help="the recipe's examples a step (default: its own rule, a 40th of the data, 2 to 16)")
    parser.add_argument("--min-steps", type=int, default=TrainConfig.min_steps, help="the recipe's fewest steps")
    parser.add_argument("--resume", action="store_true",
                        help="keep the seeds already saved by a run of the same commit and arguments")
    args = parser.parse_args()

    train_all, test = load(args.task, args.data)
    labels = sorted({y for _, y in train_all})
    if args.test:
        test = random.Random(1).sample(test, args.test)
    size = f"{args.per_class}-per-class" if args.per_class else "full"
    config = TrainConfig(batch_size=args.batch_size, min_steps=args.min_steps)
    lever = "".join(f"-{name}-{value}" for name, value, default in (
        ("batch", args.batch_size, TrainConfig.batch_size), ("steps", args.min_steps, TrainConfig.min_steps))
        if value != default)
    result_name = f"few-shot-{args.task}-{size}{lever}{'-smoke' if args.test else ''}"
    done = finished_seeds(result_name, args) if args.resume else {}
    runs: list[dict[str, Any]] = []
    mean: dict[str, dict[str, float]] = {}
    for seed in args.seeds:  # saved after each seed, so a long run's finished seeds are kept
        runs.append(done.get(seed) or one_seed(train_all, test, labels, seed, args.per_class, args.home,
                                                  config))
        names = list(runs[0]["results"])
        mean = {name: {metric: round(statistics.mean(r["results"][name][metric] for r in runs), 4)
                       for metric in ("accuracy", "macro_f1")} for name in names}
        report = {"task": args.task, "size": size, "test_queries": len(test),
                  "labels": len(labels), "seeds": [r["seed"] for r in runs], "mean": mean, "runs": runs}
        save(result_name, report, args, show=False)
    print(json.dumps(mean, indent=1))


if __name__ == "__main__":
    main()
