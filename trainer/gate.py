"""The promotion gate: a candidate replaces the active model only if it measurably beats it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUMMARY_KEYS = ("macro_f1", "weighted_f1", "accuracy", "n")


@dataclass
class Scores:
    """Holdout metrics of each contender, all on the same holdout examples."""

    candidate: dict[str, Any]
    current: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    baseline_note: str = "baseline: not configured"

    def report(self) -> dict[str, Any]:
        def brief(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
            if not metrics:
                return None
            per_class = {label: round(v["f1"], 4) for label, v in metrics.get("per_class", {}).items()}
            return {**{k: metrics[k] for k in SUMMARY_KEYS}, "per_department_f1": per_class}

        return {"candidate": brief(self.candidate), "current": brief(self.current),
                "baseline": brief(self.baseline), "baseline_note": self.baseline_note}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    checks: list[str] = field(default_factory=list)


def decide(scores: Scores) -> Decision:
    if not scores.candidate:
        return Decision(False, "no holdout examples: the candidate cannot be evaluated")
    candidate = scores.candidate["macro_f1"]
    if scores.current is None:
        return Decision(True, f"first model: holdout macro-F1 {candidate:.3f}; {scores.baseline_note}")
    current = scores.current["macro_f1"]
    if candidate <= current:
        return Decision(False, f"candidate macro-F1 {candidate:.3f} does not beat the active model's {current:.3f}")
    return Decision(True, f"candidate macro-F1 {candidate:.3f} beats the active model's {current:.3f}; "
                          f"{scores.baseline_note}")
