"""A training run's report: one typed object that the trainer writes, the store keeps as JSON, and the
command line, the slash command and the Home tab read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def verdict_line(status: str, reason: str) -> str:
    """`not promoted: no evidence …`: the run's verdict said once. The stored reason starts with the verdict
    ("promoted: …", "not promoted: …") so that it reads alone; a view that also shows the status strips it."""
    if status in ("shadow", "awaiting_approval"):  # its reason names the stage: "in shadow: passed the gate …"
        return reason
    said = reason.removeprefix("promoted: ").removeprefix("not promoted: ")
    return f"{status.replace('_', ' ')}: {said}" if said else status.replace("_", " ")


@dataclass(frozen=True)
class ModelScore:
    """One contender's result on the gate's holdout."""

    macro_f1: float
    weighted_f1: float
    accuracy: float
    n: int
    per_department_f1: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        return (f"macro-F1 {self.macro_f1:.3f}  weighted-F1 {self.weighted_f1:.3f}  "
                f"accuracy {self.accuracy:.3f}  (n={self.n})")


@dataclass(frozen=True)
class BaselineCost:
    """What the baseline's requests cost in one run; cached answers cost nothing again."""

    model: str
    prompt_version: str
    requests: int = 0
    retries: int = 0
    cached: int = 0
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True)
class KnownMistakes:
    """Of the routing model's misroutes that agents corrected, how many each model now gets right.

    Reported apart and never gated on: these examples are chosen by one model's errors.
    """

    n: int
    candidate_correct: int
    current_correct: int | None = None


@dataclass(frozen=True)
class Distillation:
    """Labels the baseline gave to routed messages no person labelled (train split only)."""

    labelled: int = 0
    requests: int = 0
    cached: int = 0
    cost_usd: float = 0.0
    budget_usd: float = 0.0
    stopped_by_budget: bool = False


@dataclass(frozen=True)
class RunReport:
    run_id: int
    promoted: bool
    reason: str
    status: str = ""
    candidate: ModelScore | None = None
    current: ModelScore | None = None
    baseline: ModelScore | None = None
    baseline_note: str = ""
    model_id: int | None = None
    adapter: str | None = None
    snapshot: str | None = None
    checks: list[str] = field(default_factory=list)
    not_judged: list[str] = field(default_factory=list)
    bootstrap_macro_f1_difference: dict[str, dict[str, float]] = field(default_factory=dict)
    holdout_sources: dict[str, int] = field(default_factory=dict)
    train_sources: dict[str, int] = field(default_factory=dict)
    known_mistakes: KnownMistakes | None = None
    alternatives: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline_cost: BaselineCost | None = None
    distillation: Distillation | None = None
    implicit_labels: int = 0  # routes no agent corrected within the grace window, labelled by this run
    training: dict[str, Any] | None = None
    # the candidate's temperature and the calibration fold's ECE before and after it
    calibration: dict[str, Any] | None = None
    confusion_png: str | None = None
    duration_s: float | None = None
    routing: dict[str, Any] | None = None  # who routes after this run, and its cost per 1,000 queries
    shadow_window: int | None = None  # live messages the candidate scores in shadow before its verdict
    shadow: dict[str, Any] | None = None  # what the shadow window showed (trainer/promotion.py)
    decision: dict[str, Any] | None = None  # how a candidate after the gate was decided: by whom, when, why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunReport:
        """Reads what `to_json` wrote, and reports stored before this type existed (unknown keys dropped)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, kind in (("candidate", ModelScore), ("current", ModelScore), ("baseline", ModelScore),
                           ("baseline_cost", BaselineCost), ("known_mistakes", KnownMistakes),
                           ("distillation", Distillation)):
            if isinstance(values.get(name), dict):
                values[name] = _build(kind, values[name])
        values.setdefault("run_id", 0)
        values.setdefault("promoted", False)
        values.setdefault("reason", "")
        return cls(**values)


def _build(kind: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in names})
