"""Card numbers a store kept from before they were masked on the way in, masked where they lie: the queries'
texts and the stored Slack events' texts (a migration runs this once; core/redact.py says what a card is).

A masked text is keyed by the hash of its new words, as a new message with them would be, unless another
query already holds those words: then it keeps its old key, so neither row loses its labels.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from core.redact import Redactor
from store.split import text_hash
from store.tables import Query, SlackEvent


def mask_stored_card_numbers(conn: Connection) -> int:
    """Masks every stored card number; returns how many rows changed."""
    cards = Redactor.cards()
    queries = Query.__table__  # type: ignore[attr-defined]
    events = SlackEvent.__table__  # type: ignore[attr-defined]
    rows = list(conn.execute(select(queries.c.id, queries.c.text, queries.c.text_hash)))
    taken = {digest for _, _, digest in rows}
    changed = 0
    for query_id, before, digest in rows:
        after = cards.text(before or "")
        if after == (before or ""):
            continue
        new_digest = text_hash(after)
        if new_digest not in taken:
            taken.add(new_digest)
            digest = new_digest
        conn.execute(update(queries).where(queries.c.id == query_id).values(text=after, text_hash=digest))
        changed += 1
    for event_id, payload in list(conn.execute(select(events.c.event_id, events.c.payload)
                                               .where(events.c.payload.is_not(None)))):
        masked = cards.in_payload(payload)
        if masked != payload:
            conn.execute(update(events).where(events.c.event_id == event_id).values(payload=masked))
            changed += 1
    return changed
