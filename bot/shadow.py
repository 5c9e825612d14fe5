"""Shadow scoring: each live message is also classified by the candidate in shadow, after the customer's
reply is posted, and stored; the candidate's answer is never shown (trainer/promotion.py judges it).

A failure here is logged and changes nothing for the customer: the reply was already sent.
"""

from __future__ import annotations

import logging

from bot.deps import BotDeps
from store.db import transaction
from store.shadow import has_shadow, record_shadow, shadow_candidate
from store.tables import SlackMessage

log = logging.getLogger(__name__)


def score_in_shadow(deps: BotDeps, message: SlackMessage, text: str) -> bool:
    """True when the candidate in shadow answered this message now (not before, on an earlier delivery)."""
    if deps.shadow is None:
        return False
    with deps.sessions() as session:
        candidate = shadow_candidate(session)
        if candidate is None or candidate.id is None or has_shadow(session, model_id=candidate.id,
                                                                   query_id=message.query_id):
            return False
        model_id, folder = candidate.id, candidate.adapter_path
    try:
        result = deps.shadow(text, model_id, folder)
    except Exception:
        log.exception("the candidate in shadow (model %s) could not classify a message", model_id)
        return False
    with transaction(deps.sessions) as session:
        return record_shadow(session, model_id=model_id, query_id=message.query_id, department=result.department,
                             confidence=result.confidence, none_of_these=result.none_of_these,
                             latency_ms=result.latency_ms)
