"""A run's report as the lines a person reads: the terminal after `switchboard train`, and Slack."""

from __future__ import annotations

from store.overview import routing_text
from store.run_report import RunReport, verdict_line


def report_lines(report: RunReport) -> list[str]:
    pending = report.status in ("shadow", "awaiting_approval")
    verdict = verdict_line(report.status if pending else "PROMOTED" if report.promoted else "not promoted",
                           report.reason)
    lines = [f"run {report.run_id}: {verdict}"]
    for who, score in (("candidate", report.candidate), ("current", report.current), ("baseline", report.baseline)):
        lines.append(f"  {who:<9} " + (score.line() if score else "-"))
    for name, alt in report.alternatives.items():
        if "macro_f1" in alt:
            lines.append(f"  {name:<9} macro-F1 {alt['macro_f1']:.3f}  (reported, not gated on)")
    for name, ci in report.bootstrap_macro_f1_difference.items():
        lines.append(f"  {name}: {ci['difference']:+.3f} macro-F1 "
                     f"(95% CI {ci['ci95_low']:+.3f} .. {ci['ci95_high']:+.3f})")
    if report.holdout_sources or report.train_sources:
        lines.append(f"  holdout from {_sources(report.holdout_sources)}; "
                     f"training from {_sources(report.train_sources)}")
    if report.known_mistakes:
        km = report.known_mistakes
        current = f", the active model {km.current_correct}" if km.current_correct is not None else ""
        lines.append(f"  known mistakes (corrected misroutes, not gated on): the candidate gets {km.candidate_correct} "
                     f"of {km.n} right{current}")
    if report.baseline_cost:
        cost = report.baseline_cost
        lines.append(f"  baseline: {cost.requests} requests, {cost.cached} cached, cost "
                     + (f"${cost.cost_usd:.4f}" if cost.cost_usd is not None else "unknown"))
    if report.distillation:
        d = report.distillation
        lines.append(f"  distilled: the baseline labelled {d.labelled} unlabelled messages for training "
                     f"({d.requests} requests, {d.cached} already paid for, ${d.cost_usd:.4f} of ${d.budget_usd:.2f})")
    if report.routing:
        lines.append("  routing now: " + routing_text(report.routing))
    if report.calibration and report.calibration.get("n"):
        c = report.calibration
        lines.append(f"  calibration: temperature {c['temperature']} fitted on {c['n']} training-split examples kept "
                     f"out of training; their ECE {c['ece_before']:.3f} before, {c['ece_after']:.3f} after")
    if report.training:
        t = report.training
        held = f", {t['examples'] - t['trained_on']} of them held out to calibrate" if "trained_on" in t else ""
        lines.append(f"  training set {t['examples']} examples ({t['new']} new, {t['replay']} replayed{held}) "
                     f"in {t['seconds']} s ({t['examples_per_second']} examples/s); "
                     f"confusion matrix: {report.confusion_png}")
    return lines


def _sources(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {source}" for source, n in sorted(counts.items())) or "nothing"
