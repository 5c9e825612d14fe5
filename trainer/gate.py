"""The promotion gate: a candidate replaces the active model only if it measurably beats it.

Rules, all on the same holdout examples:
1. the candidate's macro-F1 is above the active model's (when there is one);
2. it is above the GPT-4o baseline's (when a baseline is configured; one that is configured but
   could not be scored blocks promotion, since the claim cannot be checked);
3. no department's F1 falls more than `max_department_drop` below the active model's;
4. every department has at least `min_holdout_per_department` holdout examples (when replacing a
   model: a first model replaces nothing, so it only has to beat the baseline).
Paired bootstrap intervals of each macro-F1 difference are reported, not gated on: the holdout is
often small, and the interval tells the reader how much the difference means.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from trainer.bootstrap import paired_bootstrap

SUMMARY_KEYS = ("macro_f1", "weighted_f1", "accuracy", "n")
NOT_CONFIGURED = "baseline: not configured"


@dataclass(frozen=True)
class GateRules:
    max_department_drop: float = 0.05
    min_holdout_per_department: int = 5


@dataclass
class Contender:
    metrics: dict[str, Any]
    predictions: list[str]


@dataclass
class Scores:
    """Each contender's holdout metrics and predictions, all on the same holdout examples."""

    y_true: list[str]
    candidate: Contender | None
    current: Contender | None = None
    baseline: Contender | None = None
    baseline_note: str = NOT_CONFIGURED
    baseline_configured: bool = False

    def intervals(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.candidate is None:
            return out
        for name, other in (("candidate_vs_current", self.current), ("candidate_vs_baseline", self.baseline)):
            if other is not None:
                out[name] = paired_bootstrap(self.y_true, self.candidate.predictions, other.predictions)
        return out

    def report(self) -> dict[str, Any]:
        def brief(contender: Contender | None) -> dict[str, Any] | None:
            if contender is None or not contender.metrics:
                return None
            metrics = contender.metrics
            per_class = {label: round(v["f1"], 4) for label, v in metrics.get("per_class", {}).items()
                         if v["support"] > 0}  # not the baseline's "<invalid>" answers
            return {**{k: metrics[k] for k in SUMMARY_KEYS}, "per_department_f1": per_class}

        return {"candidate": brief(self.candidate), "current": brief(self.current),
                "baseline": brief(self.baseline), "baseline_note": self.baseline_note,
                "bootstrap_macro_f1_difference": self.intervals()}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    checks: list[str] = field(default_factory=list)


def decide(scores: Scores, rules: GateRules | None = None) -> Decision:
    rules = rules or GateRules()
    if scores.candidate is None or not scores.candidate.metrics:
        return Decision(False, "no holdout examples: the candidate cannot be evaluated")
    candidate = scores.candidate.metrics
    checks: list[str] = []
    failures: list[str] = []

    if scores.current is not None:
        current = scores.current.metrics
        _compare(checks, failures, "the active model", candidate["macro_f1"], current["macro_f1"])
        for label, drop in _department_drops(candidate, current).items():
            if drop > rules.max_department_drop:
                limit = rules.max_department_drop * 100
                failures.append(f"{label} F1 falls {drop * 100:.1f} points (limit {limit:.0f})")
        checks.append(f"no department falls more than {rules.max_department_drop * 100:.0f} F1 points")
        thin = _thin_departments(scores.y_true, candidate, rules.min_holdout_per_department)
        if thin:
            failures.append(f"holdout too small (under {rules.min_holdout_per_department} examples) for "
                            + ", ".join(thin))
    if scores.baseline_configured:
        if scores.baseline is None:
            failures.append(scores.baseline_note)
        else:
            _compare(checks, failures, "the baseline", candidate["macro_f1"], scores.baseline.metrics["macro_f1"])

    if failures:
        return Decision(False, "not promoted: " + "; ".join(failures), checks)
    summary = "; ".join(checks) if checks else "first model"
    note = "" if scores.baseline_configured else f"; {scores.baseline_note}"
    return Decision(True, f"promoted: macro-F1 {candidate['macro_f1']:.3f}; {summary}{note}", checks)


def _compare(checks: list[str], failures: list[str], name: str, candidate: float, other: float) -> None:
    if candidate > other:
        checks.append(f"beats {name} ({candidate:.3f} > {other:.3f})")
    else:
        failures.append(f"macro-F1 {candidate:.3f} does not beat {name}'s {other:.3f}")


def _department_drops(candidate: dict[str, Any], current: dict[str, Any]) -> dict[str, float]:
    mine, theirs = candidate.get("per_class", {}), current.get("per_class", {})
    return {label: theirs[label]["f1"] - mine[label]["f1"]
            for label in sorted(set(mine) & set(theirs)) if theirs[label]["support"] > 0}


def _thin_departments(y_true: list[str], candidate: dict[str, Any], minimum: int) -> list[str]:
    counts = Counter(y_true)
    return [label for label in sorted(candidate.get("per_class", {})) if counts[label] < minimum]
