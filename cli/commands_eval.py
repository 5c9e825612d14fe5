"""`switchboard eval FILE`: a model on a labelled file, as agents would live with it."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.compose import Context, open_context, router_for
from cli.output import emit

if TYPE_CHECKING:
    from trainer.alternatives import AlternativeSet


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate the active model (or --model ID) on a labelled file")
    p.add_argument("file", type=Path)
    p.add_argument("--model", type=int, help="model id (default: the active one)")
    p.add_argument("--out-of-scope-label", metavar="NAME",
                   help="rows labelled NAME belong to no department; adds out_of_scope and in_scope outcomes")
    p.add_argument("--alternatives", nargs="?", const="all", choices=["all", "fast"],
                   help="also score the cheap alternatives, trained on the store's training split, by the same rule "
                        "(fast: without the fine-tuned encoder, which takes minutes on a CPU)")
    p.add_argument("--confusion-png", type=Path, help="also write the confusion matrix here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=evaluate)


def evaluate(args: argparse.Namespace) -> int:
    from classifier.routing.calibration import ece, with_temperature
    from classifier.routing.metrics import classification_metrics, write_confusion_png
    from classifier.routing.outcomes import by_threshold, outcomes
    from store.formats import read_labelled_file
    from trainer.alternatives import AlternativeSet

    parsed = read_labelled_file(args.file, out_of_scope_label=args.out_of_scope_label)
    ctx = open_context()
    model, router = router_for(ctx, args.model)
    texts, truth = [t for t, _ in parsed.examples], [label for _, label in parsed.examples]
    started = time.perf_counter()
    raw = router.score(texts)
    out = router.decide(raw, latency_ms=(time.perf_counter() - started) * 1000 / max(1, len(texts)))
    single = [router.classify(t).latency_ms for t in texts[:20]]
    metrics = classification_metrics(truth, [c.answer for c in out], labels=router.labels,
                                     confidences=[c.confidence for c in out])
    known = [i for i, label in enumerate(truth) if label in router.labels]
    index = [router.labels.index(truth[i]) for i in known]
    temperature = router.calibration.temperature
    rule = {"threshold": ctx.settings.confidence_threshold, "margin": ctx.settings.confidence_margin}
    payload: dict[str, Any] = {
        "model": model.id, **metrics, "rejected": len(parsed.rejected),
        "labels_unknown_to_model": sorted(set(truth) - set(router.labels)),
        "calibration": {"temperature": round(temperature, 4),
                        "ece_before": round(ece(raw.probs[known], index), 4) if known else None,
                        "ece_after": round(ece(with_temperature(raw.probs, temperature)[known], index), 4)
                        if known else None},
        "triage_rule": rule,
        "thresholds": by_threshold(truth, out, margin=rule["margin"]),
        "latency_ms": {"batched_per_query": round(out[0].latency_ms, 2) if out else None,
                       "single_query_median": round(statistics.median(single), 2) if single else None}}
    if args.out_of_scope_label:
        payload.update(outcomes(truth, out, **rule))
    if args.alternatives:
        payload["alternatives"] = _alternatives(ctx, texts, truth, rule, which=AlternativeSet(args.alternatives))
    if args.confusion_png:
        payload["confusion_png"] = str(write_confusion_png(metrics["confusion"], args.confusion_png))
    emit(args.json, payload, "\n".join(_lines(args, payload)))
    return 0


def _alternatives(ctx: Context, texts: list[str], truth: list[str], rule: dict[str, float], *,
                  which: AlternativeSet) -> dict[str, Any]:
    """Each cheap alternative trained on the store's training split, its probabilities under the bot's rule."""
    from classifier.routing.metrics import classification_metrics
    from classifier.routing.outcomes import from_probabilities, outcomes
    from store.examples import labelled_examples
    from store.tables import Split
    from trainer.alternatives import available_alternatives

    with ctx.sessions() as session:
        train = [(e.text, e.label) for e in labelled_examples(session, split=Split.TRAIN)]
    if len({label for _, label in train}) < 2:
        return {"skipped": "the store's training split needs two classes"}
    results: dict[str, Any] = {}
    for name, fit in available_alternatives().items():
        if not which.includes(name):
            continue
        fitted = fit(train)
        answers = from_probabilities(fitted.labels, fitted.probabilities(texts), model=name)
        m = classification_metrics(truth, [a.answer for a in answers], labels=fitted.labels)
        results[name] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                         **outcomes(truth, answers, **rule)}
    return results


def _lines(args: argparse.Namespace, p: dict[str, Any]) -> list[str]:
    cal = p["calibration"]
    lines = [f"model {p['model']} on {args.file} (n={p['n']}): accuracy {p['accuracy']:.3f}, "
             f"macro-F1 {p['macro_f1']:.3f}, weighted-F1 {p['weighted_f1']:.3f}"]
    if cal["ece_before"] is not None:
        lines.append(f"calibration: ECE {cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after "
                     f"(temperature {cal['temperature']})")
    lines += [f"  {label:<28} P {v['precision']:.2f}  R {v['recall']:.2f}  F1 {v['f1']:.2f}  n={v['support']}"
              for label, v in p["per_class"].items()]
    lines.append("confidence threshold -> share sent to triage, accuracy of what is routed:")
    lines += [f"  {t['threshold']:.1f}: triage {t['sent_to_triage']:.1%}, routed right "
              f"{t['routed_accuracy'] if t['routed_accuracy'] is None else format(t['routed_accuracy'], '.1%')}"
              for t in p["thresholds"]]
    for who, o in [("router", p), *p.get("alternatives", {}).items()]:
        if "in_scope" in o:
            lines.append(_outcome_line(who, o))
    lines.append(f"latency: {p['latency_ms']['single_query_median']} ms median for one query, "
                 f"{p['latency_ms']['batched_per_query']} ms per query batched")
    if p["labels_unknown_to_model"]:
        lines.append(f"labels the model was never trained on: {', '.join(p['labels_unknown_to_model'])}")
    return lines


def _outcome_line(who: str, o: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    i, n = o["in_scope"], o.get("out_of_scope", {})
    return (f"{who}: in scope routed right {pct(i['routed_correct'])}, misrouted {pct(i['misrouted'])}, "
            f"triaged {pct(i['triaged'])}; out of scope caught {pct(n.get('recall'))} "
            f"(precision {pct(n.get('precision'))})")
