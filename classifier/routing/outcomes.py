"""What agents live with: each message routed right, misrouted, sent to triage, or called "none of these".

The bot's rule, in one place for the bot, `eval` and the benchmarks: a message goes to triage when
the router says it belongs to no department, when its top department's probability is under the
threshold, or when the runner-up is within the margin. The same rule is applied to the cheap
alternatives' probabilities, so every contender is judged as the bot would use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from classifier.routing.router import Classification
from core.margins import top_two_margin
from core.vocabulary import OUT_OF_SCOPE

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def needs_triage(result: Classification, *, threshold: float, margin: float) -> bool:
    return result.confidence < threshold or top_two_margin(result.scores) < margin


def sent_to_triage(result: Classification, *, threshold: float, margin: float) -> bool:
    return result.none_of_these or needs_triage(result, threshold=threshold, margin=margin)


def from_probabilities(labels: Sequence[str], rows: Any, *, model: str) -> list[Classification]:
    """Classifications from a probability matrix (an alternative's), its `OUT_OF_SCOPE` column if it has one
    being the probability of none, which wins as any class would (when it is the likeliest)."""
    departments = [j for j, label in enumerate(labels) if label != OUT_OF_SCOPE]
    none_at = list(labels).index(OUT_OF_SCOPE) if OUT_OF_SCOPE in labels else None
    out = []
    for row in rows:
        best = max(departments, key=lambda j: row[j])
        none = float(row[none_at]) if none_at is not None else 0.0
        out.append(Classification(department=labels[best], confidence=float(row[best]),
                                  scores={labels[j]: float(row[j]) for j in departments}, model_name=model,
                                  latency_ms=0.0, out_of_scope=none, none_of_these=none > row[best]))
    return out


def _share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def outcomes(truth: Sequence[str], results: Sequence[Classification], *, threshold: float,
             margin: float) -> dict[str, Any]:
    """`out_of_scope`: `recall` (share of out-of-scope rows sent to triage or called none) and `precision`
    (share of those caught that were out of scope); `in_scope`: shares of in-scope rows `routed_correct`,
    `misrouted` (to a department, wrongly, without triage) and `triaged`."""
    caught = [sent_to_triage(r, threshold=threshold, margin=margin) for r in results]
    none_rows = [c for t, c in zip(truth, caught, strict=True) if t == OUT_OF_SCOPE]
    in_rows = [(t, r, c) for t, r, c in zip(truth, results, caught, strict=True) if t != OUT_OF_SCOPE]
    return {
        "out_of_scope": {"n": len(none_rows), "recall": _share(sum(none_rows), len(none_rows)),
                         "precision": _share(sum(none_rows), sum(caught))},
        "in_scope": {"n": len(in_rows),
                     "routed_correct": _share(sum(not c and r.department == t for t, r, c in in_rows), len(in_rows)),
                     "misrouted": _share(sum(not c and r.department != t for t, r, c in in_rows), len(in_rows)),
                     "triaged": _share(sum(c for _, _, c in in_rows), len(in_rows))},
    }


def by_threshold(truth: Sequence[str], results: Sequence[Classification], *, margin: float) -> list[dict[str, Any]]:
    """What each confidence threshold would send to triage, and how often what it routes is right."""
    rows = []
    for threshold in THRESHOLDS:
        o = outcomes(truth, results, threshold=threshold, margin=margin)
        routed = [(t, r) for t, r in zip(truth, results, strict=True)
                  if not sent_to_triage(r, threshold=threshold, margin=margin)]
        rows.append({"threshold": threshold, "sent_to_triage": _share(len(results) - len(routed), len(results)),
                     "routed_accuracy": _share(sum(r.department == t for t, r in routed), len(routed)),
                     "in_scope_triaged": o["in_scope"]["triaged"], "out_of_scope_caught": o["out_of_scope"]["recall"]})
    return rows
