"""The admins' approval request (`SWITCHBOARD_PROMOTION=approve`): the run's comparison as Block Kit, with
Approve and Reject buttons the bot answers (bot/approvals.py), posted once per candidate.

It quotes a few customers' messages the two models disagreed on: redacted (core/redact.py, every
detector, whatever `SWITCHBOARD_REDACT` says) and escaped. Where each request was posted and which texts
it quotes is recorded (store/slack_work.py), so that forgetting a quoted text deletes the request and a
candidate still waiting is asked about again, the forgotten text shown as "(forgotten)"."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel import Session

from core.mrkdwn import escape, quote
from core.redact import Redactor
from core.vocabulary import APPROVE_ACTION, REJECT_ACTION
from store.db import SessionFactory, transaction
from store.shadow import awaiting_approval, claim_approval_post, query_texts, run_of
from store.slack_work import quote_places
from store.tables import ModelVersion

log = logging.getLogger(__name__)

Ask = Callable[[str, list[dict[str, Any]]], Sequence[tuple[str, str]] | None]
"""Posts the text and blocks to the admins; returns where (channel, ts of each post), None if it cannot say."""
EXAMPLES = 3  # messages shown each way: enough to judge, short enough to read
EXCERPT_CHARS = 150  # of each message shown
SECTION_CHARS = 2900  # Slack refuses a section's text past 3,000 characters
REDACT = Redactor()  # every built-in detector: the alert channel is no place for a customer's details


def ask_for_approvals(sessions: SessionFactory, ask: Ask) -> list[int]:
    """Posts the request for every candidate waiting for approval that has not been asked about yet."""
    requests = []
    with transaction(sessions) as session:
        for model in awaiting_approval(session):
            assert model.id is not None
            if claim_approval_post(session, model.id):
                requests.append((model.id, quoted_queries(session, model.id), *approval_message(session, model)))
    for model_id, quoted, text, blocks in requests:
        try:
            places = ask(text, blocks)
        except Exception:  # the request stays answerable from `/switchboard approve` and the shell
            log.exception("could not post the approval request for model %s", model_id)
            continue
        if places and quoted:
            with transaction(sessions) as session:
                quote_places(session, model_id=model_id, query_ids=quoted, places=places)
    return [model_id for model_id, *_ in requests]


def quoted_queries(session: Session, model_id: int) -> list[int]:
    """The ids of the customers' texts the request for `model_id` quotes (those not forgotten yet)."""
    run = run_of(session, model_id)
    shadow = ((run.report or {}) if run else {}).get("shadow") or {}
    ids = list(dict.fromkeys(shadow.get("only_candidate_right", [])[:EXAMPLES]
                             + shadow.get("only_live_right", [])[:EXAMPLES]))
    texts = query_texts(session, ids)
    return [i for i in ids if i in texts]


def approval_message(session: Session, model: ModelVersion) -> tuple[str, list[dict[str, Any]]]:
    assert model.id is not None
    run = run_of(session, model.id)
    report = (run.report or {}) if run else {}
    rival = f"model {model.parent_id}" if model.parent_id else "the baseline"
    text = (f"Model {model.id} passed the gate and waits for an admin's approval to replace {rival}: "
            f"`/switchboard approve {model.id}` or `/switchboard reject {model.id}`.")
    lines = [_department_table(report, active=f"model {model.parent_id}" if model.parent_id else "the active model")]
    shadow = report.get("shadow") or {}
    if shadow:
        lines.append(f"*Shadow window*: {shadow['messages']} live messages, {shadow['agreement']:.0%} agreement, "
                     f"{shadow['audited']} audited.")
        texts = query_texts(session, shadow.get("only_candidate_right", [])[:EXAMPLES]
                            + shadow.get("only_live_right", [])[:EXAMPLES])
        for title, ids in (("Only the candidate got right", shadow.get("only_candidate_right", [])),
                           (f"Only {rival} got right", shadow.get("only_live_right", []))):
            if ids:  # customers' words: redacted, and escaped so a `<!channel>` in one is shown, never fired
                lines.append(f"*{title}* ({len(ids)}):\n" + "\n".join(
                    quote(REDACT.text(texts[i]), limit=EXCERPT_CHARS) if i in texts else ">(forgotten)"
                    for i in ids[:EXAMPLES]))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": part}} for line in lines for part in _parts(line)]
    blocks.append({"type": "actions", "block_id": f"approval:{model.id}", "elements": [
        {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": str(model.id),
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": str(model.id),
         "text": {"type": "plain_text", "text": "Reject"}}]})
    return text, blocks


def _department_table(report: dict[str, Any], *, active: str) -> str:
    """Each department's F1, the candidate's against its rival's: on the holdout against the active model
    (the baseline when there is none), and on the shadow window's audited messages against the active model,
    with how many were audited. A department either side lacks shows "–" there, never a made-up 0."""
    mine = (report.get("candidate") or {}).get("per_department_f1", {})
    rival: dict[str, Any] = report.get("current") or report.get("baseline") or {}
    held_rival = active if report.get("current") else "the baseline" if rival else None
    theirs = rival.get("per_department_f1", {})
    shadow = report.get("shadow")
    live = (shadow or {}).get("per_department", {})
    rows = []
    for name in sorted(set(mine) | set(theirs) | set(live)):
        row = f"• *{escape(name)}*: holdout {_f1(mine.get(name))}" + (f" vs {_f1(theirs.get(name))}"
                                                                       if held_rival else "")
        if shadow:
            row += (f"; shadow {_f1(live[name].get('candidate'))} vs {_f1(live[name].get('active'))} "
                    f"({live[name].get('n', 0)} audited)" if name in live else "; shadow: none audited")
        rows.append(row)
    if not rows:
        return ""
    n = (report.get("candidate") or {}).get("n")
    head = "*F1 by department*, candidate" + (f" vs {held_rival}" if held_rival else "") + " on the holdout" \
        + (f" (n={n})" if n else "") + (f"; candidate vs {active} on the shadow window's audited messages"
                                        if shadow else "") + ":"
    return head + "\n" + "\n".join(rows)


def _parts(text: str, limit: int = SECTION_CHARS) -> list[str]:
    """`text` cut at line ends into pieces Slack takes as one section each (a longer line is shortened)."""
    parts: list[str] = []
    for line in text.splitlines():
        line = line[:limit]
        if parts and len(parts[-1]) + 1 + len(line) <= limit:
            parts[-1] += "\n" + line
        else:
            parts.append(line)
    return parts


def _f1(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
