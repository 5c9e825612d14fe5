"""A run's report as the lines a person reads: the terminal after `switchboard train`, and Slack."""

from __future__ import annotations

from typing import Any


def report_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"run {report['run_id']}: {'PROMOTED' if report['promoted'] else 'not promoted'}: {report['reason']}"]
    for who in ("candidate", "current", "baseline"):
        m = report.get(who)
        lines.append(f"  {who:<9} " + ("-" if not m else
                     f"macro-F1 {m['macro_f1']:.3f}  weighted-F1 {m['weighted_f1']:.3f}  "
                     f"accuracy {m['accuracy']:.3f}  (n={m['n']})"))
    for name, alt in (report.get("alternatives") or {}).items():
        if "macro_f1" in alt:
            lines.append(f"  {name:<9} macro-F1 {alt['macro_f1']:.3f}  (reported, not gated on)")
    for name, ci in (report.get("bootstrap_macro_f1_difference") or {}).items():
        lines.append(f"  {name}: {ci['difference']:+.3f} macro-F1 "
                     f"(95% CI {ci['ci95_low']:+.3f} .. {ci['ci95_high']:+.3f})")
    if report.get("baseline_cost"):
        cost = report["baseline_cost"]
        lines.append(f"  baseline: {cost['requests']} requests, {cost['cached']} cached, cost "
                     + (f"${cost['cost_usd']:.4f}" if cost.get("cost_usd") is not None else "unknown"))
    if report.get("training"):
        t = report["training"]
        lines.append(f"  trained on {t['examples']} examples ({t['new']} new, {t['replay']} replayed) "
                     f"in {t['seconds']} s ({t['examples_per_second']} examples/s); "
                     f"confusion matrix: {report['confusion_png']}")
    return lines
