"""After the gate: a passing candidate runs in shadow on live messages, then is promoted, refused, or
(with `SWITCHBOARD_PROMOTION=approve`) handed to the admins.

The bot stores the candidate's answer to each live message beside the active router's (store/shadow.py);
this module, run by the trainer service every few seconds, ends the window once it holds
`shadow_messages` messages. The verdict uses the audited messages only, as the gate's holdout does:
an audit is a random sample, while a correction was chosen by the active model's mistake and would
favour any candidate. The candidate is refused when the active router beats it on them with the
gate's confidence (the same paired bootstrap); otherwise it moves on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from store.db import SessionFactory, transaction
from store.shadow import (
    NotPending,
    ShadowRow,
    await_approval,
    decide,
    disagreements,
    shadow_candidate,
    shadow_count,
    shadow_rows,
)
from store.tables import LabelSource, ModelStatus, ModelVersion, RunStatus
from trainer.bootstrap import paired_bootstrap
from trainer.gate import GateRules

log = logging.getLogger(__name__)

NO_ANSWER = "<no answer>"  # the live side of a message nothing classified (triage before any model)


def first_stage(rules: GateRules, *, live_rival: bool) -> ModelStatus | None:
    """Where a candidate that passed the gate goes: shadow when something routes live traffic to compare
    it with, else approval when admins approve, else None (promoted now)."""
    if rules.shadow_messages > 0 and live_rival:
        return ModelStatus.SHADOW
    return ModelStatus.AWAITING_APPROVAL if rules.approval else None


@dataclass(frozen=True)
class ShadowEvidence:
    messages: int
    agreement: float
    audited: int
    candidate_macro_f1: float | None = None
    live_macro_f1: float | None = None
    live_ahead: dict[str, float] = field(default_factory=dict)  # the paired bootstrap, live minus candidate
    per_department: dict[str, dict[str, float]] = field(default_factory=dict)  # F1 of each, audited messages
    only_candidate_right: list[int] = field(default_factory=list)  # query ids, disagreements people labelled
    only_live_right: list[int] = field(default_factory=list)
    worse: bool = False

    def summary(self) -> str:
        scored = (f"{self.audited} audited: macro-F1 {self.candidate_macro_f1:.3f} against the active router's "
                  f"{self.live_macro_f1:.3f}" if self.audited and self.candidate_macro_f1 is not None
                  else "none audited")
        return (f"{self.messages} live messages in shadow, {self.agreement:.0%} agreement, {scored}; of the "
                f"disagreements people labelled, the candidate alone was right on {len(self.only_candidate_right)}"
                f", the active router alone on {len(self.only_live_right)}")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def shadow_evidence(rows: list[ShadowRow], *, confidence: float) -> ShadowEvidence:
    live = [r.live or NO_ANSWER for r in rows]
    agreement, only_candidate, only_live = disagreements(rows)
    audited = [(r, a) for r, a in zip(rows, live, strict=True) if r.label_source == LabelSource.AUDIT.value]
    if not audited:
        return ShadowEvidence(len(rows), agreement, 0, only_candidate_right=only_candidate,
                              only_live_right=only_live)
    truth = [r.label or "" for r, _ in audited]
    mine, theirs = [r.shadow for r, _ in audited], [a for _, a in audited]
    ahead = paired_bootstrap(truth, theirs, mine)
    worse = ahead["difference"] > 0 and ahead["p_not_better"] <= 1 - confidence
    per_department = {label: {"candidate": _f1(truth, mine, label), "active": _f1(truth, theirs, label),
                              "n": n} for label, n in sorted(Counter(truth).items())}
    return ShadowEvidence(len(rows), agreement, len(audited), _macro(truth, mine), _macro(truth, theirs), ahead,
                          per_department, only_candidate, only_live, worse)


def _f1(truth: list[str], predicted: list[str], label: str) -> float:
    tp = sum(t == p == label for t, p in zip(truth, predicted, strict=True))
    fp = sum(p == label != t for t, p in zip(truth, predicted, strict=True))
    fn = sum(t == label != p for t, p in zip(truth, predicted, strict=True))
    return round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else 0.0


def _macro(truth: list[str], predicted: list[str]) -> float:
    labels = sorted(set(truth))
    return round(sum(_f1(truth, predicted, label) for label in labels) / len(labels), 4)


@dataclass(frozen=True)
class Settled:
    model_id: int
    outcome: RunStatus  # promoted, not_promoted, or awaiting_approval
    reason: str


def settle_shadow(sessions: SessionFactory, rules: GateRules) -> Settled | None:
    """Ends the shadow window of the candidate in shadow once it is full; None while it is not (or none is,
    or an admin decided it meanwhile)."""
    try:
        return _settle(sessions, rules)
    except NotPending as exc:
        log.info("the shadow window's end found the candidate decided already: %s", exc)
        return None


def _settle(sessions: SessionFactory, rules: GateRules) -> Settled | None:
    with transaction(sessions) as session:
        model = shadow_candidate(session)
        if model is None or model.id is None or shadow_count(session, model.id) < rules.shadow_messages:
            return None
        evidence = shadow_evidence(shadow_rows(session, model.id), confidence=rules.confidence)
        if evidence.worse:
            lead = evidence.live_ahead
            reason = (f"not promoted: worse than the active router on the shadow window ({evidence.summary()}; "
                      f"the active router's lead of {lead['difference']:+.3f} holds in "
                      f"{1 - lead['p_not_better']:.0%} of bootstrap rounds)")
            decided = decide(session, model_id=model.id, expected=ModelStatus.SHADOW, promote_it=False,
                             by="trainer (shadow)", reason=reason, evidence=evidence.to_json())
        elif rules.approval:
            return _await_approval(session, model, evidence)
        else:
            decided = decide(session, model_id=model.id, expected=ModelStatus.SHADOW, promote_it=True,
                             by="trainer (shadow)", reason=f"promoted: not worse on the shadow window "
                                                           f"({evidence.summary()})", evidence=evidence.to_json())
        settled = Settled(model.id, RunStatus.PROMOTED if decided.promoted else RunStatus.NOT_PROMOTED,
                          decided.reason)
    log.info("model %s after its shadow window: %s", settled.model_id, settled.reason)
    return settled


def _await_approval(session: Session, model: ModelVersion, evidence: ShadowEvidence) -> Settled:
    assert model.id is not None
    reason = f"waiting for an admin's approval: not worse on the shadow window ({evidence.summary()})"
    await_approval(session, model_id=model.id, reason=reason, evidence=evidence.to_json())
    return Settled(model.id, RunStatus.AWAITING_APPROVAL, reason)
