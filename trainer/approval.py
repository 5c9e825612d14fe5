"""The admins' approval request (`SWITCHBOARD_PROMOTION=approve`): the run's comparison as Block Kit, with
Approve and Reject buttons the bot answers (bot/approvals.py), posted once per candidate."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from core.vocabulary import APPROVE_ACTION, REJECT_ACTION
from store.db import SessionFactory, transaction
from store.shadow import awaiting_approval, claim_approval_post, query_texts, run_of
from store.tables import ModelVersion

log = logging.getLogger(__name__)

Ask = Callable[[str, list[dict[str, Any]]], None]  # posts the text and blocks to the admins
EXAMPLES = 3  # messages shown each way: enough to judge, short enough to read


def ask_for_approvals(sessions: SessionFactory, ask: Ask) -> list[int]:
    """Posts the request for every candidate waiting for approval that has not been asked about yet."""
    requests = []
    with transaction(sessions) as session:
        for model in awaiting_approval(session):
            assert model.id is not None
            if claim_approval_post(session, model.id):
                requests.append((model.id, *approval_message(session, model)))
    for model_id, text, blocks in requests:
        try:
            ask(text, blocks)
        except Exception:  # the request stays answerable from `/switchboard approve` and the shell
            log.exception("could not post the approval request for model %s", model_id)
    return [model_id for model_id, _, _ in requests]


def approval_message(session: Session, model: ModelVersion) -> tuple[str, list[dict[str, Any]]]:
    assert model.id is not None
    run = run_of(session, model.id)
    report = (run.report or {}) if run else {}
    rival = f"model {model.parent_id}" if model.parent_id else "the baseline"
    text = (f"Model {model.id} passed the gate and waits for an admin's approval to replace {rival}: "
            f"`/switchboard approve {model.id}` or `/switchboard reject {model.id}`.")
    lines = [_department_table(report, rival)]
    shadow = report.get("shadow") or {}
    if shadow:
        lines.append(f"*Shadow window*: {shadow['messages']} live messages, {shadow['agreement']:.0%} agreement, "
                     f"{shadow['audited']} audited.")
        texts = query_texts(session, shadow.get("only_candidate_right", [])[:EXAMPLES]
                            + shadow.get("only_live_right", [])[:EXAMPLES])
        for title, ids in (("Only the candidate got right", shadow.get("only_candidate_right", [])),
                           (f"Only {rival} got right", shadow.get("only_live_right", []))):
            if ids:
                lines.append(f"*{title}* ({len(ids)}):\n" + "\n".join(f"> {texts.get(i, '(forgotten)')[:150]}"
                                                                       for i in ids[:EXAMPLES]))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": line[:2900]}} for line in lines if line]
    blocks.append({"type": "actions", "block_id": f"approval:{model.id}", "elements": [
        {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": str(model.id),
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": str(model.id),
         "text": {"type": "plain_text", "text": "Reject"}}]})
    return text, blocks


def _department_table(report: dict[str, Any], rival: str) -> str:
    """Each department's F1, the candidate's against its rival's, on the holdout and on the shadow window."""
    mine = (report.get("candidate") or {}).get("per_department_f1", {})
    theirs = (report.get("current") or report.get("baseline") or {}).get("per_department_f1", {})
    shadow = (report.get("shadow") or {}).get("per_department", {})
    rows = []
    for name in sorted(set(mine) | set(shadow)):
        held = f"holdout {mine.get(name, 0):.2f} vs {theirs[name]:.2f}" if name in theirs else \
               f"holdout {mine.get(name, 0):.2f}"
        live = (f"; shadow {shadow[name]['candidate']:.2f} vs {shadow[name]['active']:.2f} "
                f"({shadow[name]['n']} audited)" if name in shadow else "")
        rows.append(f"• *{name}*: {held}{live}")
    return f"*F1 by department*, candidate vs {rival}:\n" + "\n".join(rows) if rows else ""
