"""The promotion gate: a candidate replaces the routing model only if it measurably beats it.

Every contender is scored on the same holdout, and the holdout holds only labels that no model's
errors selected: imported history, admins' labels and audits of randomly sampled traffic (see
`store/split.py`). The rules scale with that evidence instead of waiting for a fixed minimum:

1. **Beats everyone.** The candidate's macro-F1 is above the active model's (when there is one)
   and the baseline's (when one is configured; a configured baseline that could not be scored
   blocks promotion, since the claim cannot be checked).
2. **Not noise.** Against the model that routes today (the active model, or the baseline while
   no fine-tuned model has beaten it), the gain must hold in at least `confidence` (90%) of
   paired bootstrap rounds: a one-sided test at the 10% level. Otherwise the answer is "not
   enough evidence yet (N held out, M needed)", where M is the holdout size at which the same gain
   would pass (the bootstrap's standard error shrinks as 1/sqrt(n)). At 90%, with the audit rate's
   default of 10% and half of the audits held out, a 5-point accuracy gain over an 85% model is
   told from noise after about 140 holdout examples (independent errors: the per-example difference has
   variance 0.2175, and 0.2175 x (1.28 / 0.05)^2 = 143); at 95% it would take 1.65 times as many.
3. **No department falls.** Where a department has at least 1/`max_department_drop` holdout
   examples (20 at the default 5 points, so that a single flipped example cannot exceed the limit
   alone), its F1 may not fall more than `max_department_drop` below the active model's. The
   departments with fewer are reported as not judged, never silently passed.

A first model with no baseline configured replaces nothing and only needs a holdout to be measured
on. Every decision carries paired bootstrap 95% intervals of the differences.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from core.settings import Settings, default_of
from store.run_report import ModelScore
from trainer.bootstrap import paired_bootstrap

NOT_CONFIGURED = "baseline: not configured"


@dataclass(frozen=True)
class GateRules:
    """How a candidate is judged and, once it passes, how it reaches routing. `GateRules()` alone promotes a
    passing candidate at once; the product's rules (`of`) first run it in shadow for `shadow_messages` live
    messages (trainer/promotion.py) and, with `approval`, wait for an admin."""

    max_department_drop: float = default_of("gate_max_department_drop")
    confidence: float = default_of("gate_confidence")
    shadow_messages: int = 0
    approval: bool = False

    @classmethod
    def of(cls, settings: Settings) -> GateRules:
        return cls(max_department_drop=settings.gate_max_department_drop, confidence=settings.gate_confidence,
                   shadow_messages=settings.shadow_messages, approval=settings.promotion == "approve")

    @property
    def department_min_examples(self) -> int:
        """The holdout size at which one flipped example moves a department's F1 less than the limit."""
        return math.ceil(1 / self.max_department_drop) if self.max_department_drop > 0 else 1


@dataclass
class Contender:
    metrics: dict[str, Any]
    predictions: list[str]

    def score(self) -> ModelScore:
        m = self.metrics
        per_class = {label: round(v["f1"], 4) for label, v in m.get("per_class", {}).items()
                     if v["support"] > 0}  # not the baseline's "<invalid>" answers
        return ModelScore(macro_f1=m["macro_f1"], weighted_f1=m["weighted_f1"], accuracy=m["accuracy"], n=m["n"],
                          per_department_f1=per_class)


@dataclass
class Scores:
    """Each contender's holdout metrics and predictions, all on the same holdout examples."""

    y_true: list[str]
    candidate: Contender | None
    current: Contender | None = None
    baseline: Contender | None = None
    baseline_note: str = NOT_CONFIGURED
    baseline_configured: bool = False
    unservable: str | None = None  # why the engine that would serve the candidate refused it, if it did

    @property
    def routing(self) -> str | None:
        """Which contender routes today and must be beaten with evidence: 'current', 'baseline' or None."""
        if self.current is not None:
            return "current"
        return "baseline" if self.baseline_configured else None

    def intervals(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        if self.candidate is None or not self.y_true:
            return out
        for name, other in (("candidate_vs_current", self.current), ("candidate_vs_baseline", self.baseline)):
            if other is not None:
                out[name] = paired_bootstrap(self.y_true, self.candidate.predictions, other.predictions)
        return out


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    checks: list[str] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)


def decide(scores: Scores, rules: GateRules | None = None) -> Decision:
    rules = rules or GateRules()
    if scores.candidate is None or not scores.candidate.metrics:
        return Decision(False, "no holdout examples yet: import labelled history or answer audit requests")
    if scores.unservable:
        return Decision(False, f"the inference engine cannot serve the candidate ({scores.unservable}): "
                               "it was scored here, and is not promoted")
    candidate = scores.candidate.metrics
    intervals = scores.intervals()
    checks: list[str] = []
    failures: list[str] = []
    not_judged: list[str] = []

    rivals = [("the active model", "current", scores.current)]
    if scores.baseline_configured:
        if scores.baseline is None:
            failures.append(scores.baseline_note)
        rivals.append(("the baseline", "baseline", scores.baseline))
    for name, key, rival in rivals:
        if rival is None:
            continue
        other = rival.metrics["macro_f1"]
        if candidate["macro_f1"] <= other:
            failures.append(f"macro-F1 {candidate['macro_f1']:.3f} does not beat {name}'s {other:.3f}")
            continue
        checks.append(f"beats {name} ({candidate['macro_f1']:.3f} > {other:.3f})")
        if scores.routing == key:
            evidence = _evidence(intervals[f"candidate_vs_{key}"], len(scores.y_true), rules.confidence)
            (checks if evidence is None else failures).append(evidence or
                                                             f"the gain over {name} is not noise "
                                                             f"({rules.confidence:.0%} of bootstrap rounds)")

    if scores.current is not None:
        drops, not_judged = _department_drops(scores.y_true, candidate, scores.current.metrics, rules)
        limit = rules.max_department_drop * 100
        failures += [f"{label} F1 falls {drop * 100:.1f} points (limit {limit:.0f})" for label, drop in drops.items()
                     if drop > rules.max_department_drop]
        judged = f"no department with {rules.department_min_examples}+ holdout examples falls more than {limit:.0f} " \
                 "F1 points"
        checks.append(judged + (f" ({len(not_judged)} not judged: {', '.join(not_judged)})" if not_judged else ""))

    if failures:
        return Decision(False, "not promoted: " + "; ".join(failures), checks, not_judged, intervals)
    summary = "; ".join(checks) if checks else "first model"
    note = "" if scores.baseline_configured else f"; {scores.baseline_note}"
    return Decision(True, f"promoted: macro-F1 {candidate['macro_f1']:.3f}; {summary}{note}", checks, not_judged,
                    intervals)


def _evidence(interval: dict[str, float], n: int, confidence: float) -> str | None:
    """None when the gain passes the one-sided bootstrap test; else the refusal, with the holdout it would need."""
    if interval["p_not_better"] <= 1 - confidence:
        return None
    z_needed = NormalDist().inv_cdf(confidence)
    gain, error = interval["difference"], interval["std_error"]
    needed = math.ceil(n * (z_needed * error / gain) ** 2) if gain > 0 and error > 0 else n + 1
    return (f"not enough evidence yet ({n} held out, {max(needed, n + 1)} needed): a gain of {gain:+.3f} holds in "
            f"{1 - interval['p_not_better']:.0%} of bootstrap rounds, under {confidence:.0%}")


def _department_drops(y_true: list[str], candidate: dict[str, Any], current: dict[str, Any],
                      rules: GateRules) -> tuple[dict[str, float], list[str]]:
    """(F1 drop of each department with enough holdout examples, the departments with too few to judge)."""
    counts = Counter(y_true)
    mine, theirs = candidate.get("per_class", {}), current.get("per_class", {})
    drops, not_judged = {}, []
    for label in sorted(set(mine) & set(theirs)):
        if theirs[label]["support"] == 0:
            continue
        if counts[label] < rules.department_min_examples:
            not_judged.append(label)
        else:
            drops[label] = theirs[label]["f1"] - mine[label]["f1"]
    return drops, not_judged
