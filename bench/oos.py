"""Out of scope on CLINC150: the router beside TF-IDF SVM and MiniLM + logistic regression, same examples.

    python -m bench.oos --per-class 10            # 10 examples per department (domain)
    python -m bench.oos --per-class 100 --seed 1

CLINC150's 10 domains are the departments; its 1,000 out-of-scope test queries are the junk, mixed
with the 4,500 in-scope test queries. Every contender trains on in-scope examples only. The router
is trained as the trainer trains it (the calibration fold held out, the head, temperature and the
k-NN bank fitted after the LoRA: `trainer/candidate.py`); its candidate signals for "none of these"
are each scored: `msp` (1 - max probability), `msp_t` (the same after temperature scaling), `energy`, `knn`
(distance to the k-th nearest training message in the model's hidden states), `knn+msp_t`
(their ranks among the test queries averaged) and `product` (the same pair placed on the
calibration fold's scale, as the router does it). The alternatives use 1 - their max probability.

For each: AUROC, the trade-off curve (share of out-of-scope caught against share of in-scope
routed right without triage, as the threshold moves), the in-scope routed right at the threshold
that catches 80% of out-of-scope, and the bot's own rule (the router's verdict, or confidence
under 0.5, or a top-2 margin under 0.1). Saves bench/results/oos-<size>-seed<N>.json and a PNG.
Published anchor (Larson et al. 2019, full data): BERT routes 96.2% of in-scope queries right
(150 intents) while catching 52.3% of out-of-scope ones.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import SHARED, Pairs, clinc150, sample_per_class
from bench.harness import save, train_router_on_pairs

CATCH_TARGET = 0.8


def curve(signal: np.ndarray, right: np.ndarray, is_oos: np.ndarray) -> dict[str, Any]:
    """As the threshold moves over `signal` (high: out of scope): the share of out-of-scope caught and of
    in-scope routed right (not caught and right)."""
    from sklearn.metrics import roc_auc_score

    thresholds = np.unique(np.quantile(signal, np.linspace(0, 1, 201)))
    points = []
    for t in thresholds:
        caught = signal >= t
        points.append((float(caught[is_oos].mean()), float((~caught & right)[~is_oos].mean()), float(t)))
    at_target = max((p for p in points if p[0] >= CATCH_TARGET), key=lambda p: p[1], default=None)
    return {"auroc": round(float(roc_auc_score(is_oos, signal)), 4),
            "in_scope_right_at_80_caught": round(at_target[1], 4) if at_target else None,
            "curve": [[round(c, 4), round(r, 4)] for c, r, _ in points]}


def bot_rule(probs: np.ndarray, right: np.ndarray, is_oos: np.ndarray, verdict: np.ndarray | None = None
             ) -> dict[str, float]:
    ranked = np.sort(probs, axis=1)[:, ::-1]
    triage = (ranked[:, 0] < 0.5) | (ranked[:, 0] - ranked[:, 1] < 0.1)
    if verdict is not None:
        triage |= verdict
    return {"out_of_scope_caught": round(float(triage[is_oos].mean()), 4),
            "in_scope_routed_right": round(float((~triage & right)[~is_oos].mean()), 4),
            "in_scope_misrouted": round(float((~triage & ~right)[~is_oos].mean()), 4)}


def router(train: Pairs, texts: list[str], labels: list[str], home: Path
           ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, Any]]:
    from classifier.routing.calibration import UNFAMILIAR_QUANTILE, doubts, knn_distances, with_temperature

    started = time.perf_counter()
    lora, _, fitted, train_on, _ = train_router_on_pairs(train, labels, cache_dir=home / "cache")
    train_s = time.perf_counter() - started
    calibration, bank = fitted.calibration, fitted.bank
    started = time.perf_counter()
    raw = lora.score(texts)
    score_ms = (time.perf_counter() - started) * 1000 / len(texts)
    probs = raw.probs.numpy()
    probs_t = with_temperature(raw.probs, calibration.temperature).numpy()
    distances = knn_distances(raw.hidden, bank)
    signals = {"msp": 1 - probs.max(1), "msp_t": 1 - probs_t.max(1), "energy": raw.energy.numpy(),
               "knn": np.array(distances)}
    signals["knn+msp_t"] = (_ranks(signals["knn"]) + _ranks(signals["msp_t"])) / 2
    doubt = doubts(with_temperature(raw.probs, calibration.temperature), range(len(labels)))
    signals["product"] = np.array(calibration.strangeness(distances, doubt))  # the same pair, on the fold's scale
    verdict = np.array(calibration.unfamiliarity(distances, doubt)) >= UNFAMILIAR_QUANTILE  # the product's rule
    return signals, probs_t, verdict, {"train_s": round(train_s, 1), "score_ms_per_query": round(score_ms, 2),
                                       "trained_on": len(train_on), "calibration": calibration.summary()}


def _ece(doubt: np.ndarray, right: np.ndarray, is_oos: np.ndarray) -> float:
    """The expected calibration error of the top answer on the in-scope test queries."""
    from classifier.routing.metrics import expected_calibration_error

    return round(expected_calibration_error(right[~is_oos].tolist(), (1 - doubt[~is_oos]).tolist()), 4)


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)) / max(1, len(x) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "clinc150")
    parser.add_argument("--per-class", type=int, help="examples per department (default: the full training set)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alternatives-only", action="store_true")
    parser.add_argument("--home", type=Path, default=Path(".switchboard"), help="the embedded model's cache")
    args = parser.parse_args()

    from trainer.alternatives import available_alternatives

    train_all, test, oos = clinc150(args.data)
    train = sample_per_class(train_all, args.per_class, args.seed)
    labels = sorted({y for _, y in train_all})
    texts = [t for t, _ in test] + oos
    truth = np.array([labels.index(y) for _, y in test] + [-1] * len(oos))
    is_oos = truth == -1
    size = f"{args.per_class}-per-class" if args.per_class else "full"
    report: dict[str, Any] = {"data": "CLINC150 domains", "size": size, "seed": args.seed, "train_examples": len(train),
                              "in_scope_test": len(test), "out_of_scope_test": len(oos), "results": {}}
    for name, fit in available_alternatives().items():
        fitted = fit(train)
        probs = np.asarray(fitted.probabilities(texts))
        order = [fitted.labels.index(label) for label in labels]
        probs = probs[:, order]
        right = probs.argmax(1) == truth
        report["results"][name] = {"max_probability": curve(1 - probs.max(1), right, is_oos),
                                   "bot_rule": bot_rule(probs, right, is_oos),
                                   "in_scope_accuracy": round(float(right[~is_oos].mean()), 4)}
        print(json.dumps({name: {k: v for k, v in report["results"][name]["max_probability"].items() if k != "curve"}}),
              flush=True)
    if not args.alternatives_only:
        signals, probs_t, verdict, about = router(train, texts, labels, args.home)
        right = probs_t.argmax(1) == truth
        result = {name: curve(signal, right, is_oos) for name, signal in signals.items()}
        about["in_scope_ece"] = {"before": _ece(signals["msp"], right, is_oos),
                                 "after": _ece(signals["msp_t"], probs_t.argmax(1) == truth, is_oos)}
        report["results"]["lora_router"] = {
            **result, **about, "in_scope_accuracy": round(float(right[~is_oos].mean()), 4),
            "bot_rule": bot_rule(probs_t, right, is_oos, verdict=verdict),
            "none_of_these_alone": {"out_of_scope_caught": round(float(verdict[is_oos].mean()), 4),
                                    "in_scope_flagged": round(float(verdict[~is_oos].mean()), 4)}}
        print(json.dumps({k: (v if not isinstance(v, dict) else {a: b for a, b in v.items() if a != "curve"})
                          for k, v in report["results"]["lora_router"].items()}), flush=True)
    out = save(f"oos-{size}-seed{args.seed}", report, args, show=False)
    _plot(report, out.with_suffix(".png"))


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, result in report["results"].items():
        curves = {k: v for k, v in result.items() if isinstance(v, dict) and "curve" in v}
        for signal, c in curves.items():
            xs, ys = zip(*c["curve"], strict=True)
            ax.plot(xs, ys, label=f"{name} ({signal}, AUROC {c['auroc']:.3f})",
                    linewidth=2.5 if name == "lora_router" and signal == "product" else 1)
    ax.axvline(CATCH_TARGET, color="grey", linestyle=":")
    ax.set_xlabel("out-of-scope queries caught (sent to triage)")
    ax.set_ylabel("in-scope queries routed right without triage")
    ax.set_title(f"CLINC150 domains, {report['size']} (seed {report['seed']}), threshold moving", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
