"""A customer's data, found, exported and forgotten: every row that holds their text or ties them to it.

A customer's message lives in many rows: the message (`slack_messages`), its text (`queries`, shared
when someone else posted the same words), the verdicts on it (`predictions`), its labels and early
removals, the baseline's cached answers, a baseline shot copied from it, the event as Slack sent it
(`slack_events.payload`) and the bot's posts about it (`slack_posts`: the reply, the forward to a
department, reroutes, hand-offs). Forgetting deletes all of them but a text another customer also
posted (their copy stays; the forgotten customer's link to it goes), and writes a `ForgetRecord`
with counts and no content. The Slack side (deleting the forwarded copies) is the caller's: queued as
owed deletions in the same transaction (store/slack_work.py, bot/forgetting.py), never waited for.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, or_, select

from store.salted import user_hash
from store.split import text_hash
from store.tables import (
    BaselinePrediction,
    BaselineShot,
    EarlyRemoval,
    ForgetRecord,
    Label,
    ModelVersion,
    Prediction,
    Query,
    ShadowPrediction,
    SlackEvent,
    SlackMessage,
    SlackPost,
    utcnow,
)

POST_KINDS = ("reply", "forward", "handoff", "notice", "apology")  # the bot's posts keyed by the message's place
_PERMALINK = re.compile(r"/archives/([A-Z0-9]+)/p(\d{10})(\d{6})")


def parse_permalink(link: str) -> tuple[str, str] | None:
    """(channel, ts) of a Slack permalink (`…/archives/C123/p1700000000123456`), or None."""
    found = _PERMALINK.search(link)
    return (found.group(1), f"{found.group(2)}.{found.group(3)}") if found else None


def messages_of_user(session: Session, user: str) -> list[SlackMessage]:
    """Their messages: by their id, or by its salted hash once retention took the id (store/retention.py)."""
    mine = or_(col(SlackMessage.user) == user, col(SlackMessage.user_hash) == user_hash(session, user))
    return list(session.exec(select(SlackMessage).where(mine).order_by(col(SlackMessage.id))))


def messages_at(session: Session, *, ts: str, channel: str | None = None) -> list[SlackMessage]:
    """The customer's message at `ts` (its own or its reply's), in `channel` when given."""
    stmt = select(SlackMessage).where(or_(col(SlackMessage.ts) == ts, col(SlackMessage.reply_ts) == ts))
    if channel:
        stmt = stmt.where(SlackMessage.channel == channel)
    return list(session.exec(stmt))


def posts_about(session: Session, messages: Sequence[SlackMessage]) -> list[SlackPost]:
    """The bot's posts about these messages, by the keys bot/ gives them."""
    keys: set[str] = set()
    patterns: list[str] = []
    for m in messages:
        keys |= {f"{kind}:{m.channel}:{m.ts}" for kind in POST_KINDS}
        patterns += [f"reroute:%:{m.id}", f"reroute:audit:{m.id}:%"]
    if not messages:
        return []
    clauses = [col(SlackPost.key).in_(keys), *(col(SlackPost.key).like(p) for p in patterns)]
    return list(session.exec(select(SlackPost).where(or_(*clauses))))


def posts_at(session: Session, *, channel: str, ts: str) -> list[SlackPost]:
    """The bot's posts about the message at (channel, ts) by their keys, stored or not (an apology for a
    message whose routing never finished)."""
    keys = [f"{kind}:{channel}:{ts}" for kind in POST_KINDS]
    return list(session.exec(select(SlackPost).where(col(SlackPost.key).in_(keys))))


def queries_to_forget(session: Session, messages: Sequence[SlackMessage], *, user: str | None) -> list[Query]:
    """The texts of these messages (and, for a user, every text they first sent) that no one else sent too."""
    forgetting = {m.id for m in messages}
    ids = {m.query_id for m in messages}
    if user is not None:
        ids |= set(session.exec(select(Query.id).where(Query.slack_user == user)))  # type: ignore[arg-type]
    kept = []
    for query in session.exec(select(Query).where(col(Query.id).in_(ids))):
        others = session.exec(select(SlackMessage.id).where(SlackMessage.query_id == query.id)).all()
        if set(others) <= forgetting:
            kept.append(query)
    return kept


def events_about(session: Session, messages: Sequence[SlackMessage], user: str | None) -> list[SlackEvent]:
    """Slack's events as stored for retries, when they carry this user's or these messages' content."""
    return events_at(session, {(m.channel, m.ts) for m in messages}, user)


def events_at(session: Session, places: set[tuple[str, str]], user: str | None = None) -> list[SlackEvent]:
    """Slack's events as stored, when they carry this user's or the messages' at these places: the
    message's own, and its edits and deletions (the message as it was, and as it became)."""
    if not places and user is None:
        return []
    found = []
    for event in session.exec(select(SlackEvent).where(col(SlackEvent.payload).is_not(None))):
        payload = event.payload or {}
        channel, now = payload.get("channel"), payload.get("message") or {}
        before = payload.get("previous_message") or {}
        if ((user is not None and user in (payload.get("user"), now.get("user"), before.get("user")))
                or any((channel, ts) in places
                       for ts in (payload.get("ts"), payload.get("deleted_ts"), now.get("ts"), before.get("ts")))):
            found.append(event)
    return found


def forget_events(session: Session, events: Sequence[SlackEvent], *, keep_event: str | None = None) -> int:
    """Clears the events' payloads (their bookkeeping stays, so a redelivery is still known as handled);
    one still pending is done: nothing is left to do about a forgotten message. `keep_event`: the
    event being handled now (an edit, whose retry needs its payload). Returns how many."""
    cleared = 0
    for event in events:
        if event.event_id == keep_event:
            continue
        event.payload = None
        if event.done_at is None and event.gave_up_at is None:
            event.done_at, event.owner, event.lease_until, event.retry_at = utcnow(), None, None, None
        session.add(event)
        cleared += 1
    return cleared


def forget(session: Session, messages: Sequence[SlackMessage], *, user: str | None, kind: str,
           requested_by: str, keep_posts: tuple[str, ...] = (), keep_event: str | None = None) -> ForgetRecord:
    """Deletes every row about `messages` (and, for `user`, every text they sent); returns the record written.
    `keep_posts`: key prefixes of the bot's posts whose rows stay (a reply that will be edited);
    `keep_event`: the event whose payload stays (the edit being handled)."""
    queries = queries_to_forget(session, messages, user=user)
    query_ids = [q.id for q in queries if q.id is not None]
    hashes = {q.text_hash for q in queries}
    rows: Counter[str] = Counter()
    trained = models_trained_on(session, query_ids)
    if cleared := forget_events(session, events_about(session, messages, user), keep_event=keep_event):
        rows["slack_events"] += cleared
    for post in posts_about(session, messages):
        if post.key.startswith(keep_posts) if keep_posts else False:
            continue
        session.delete(post)
        rows["slack_posts"] += 1
    prediction_ids = {m.prediction_id for m in messages if m.prediction_id is not None}
    for message in messages:
        session.delete(message)
    rows["slack_messages"] += len(messages)
    session.flush()
    for shot in session.exec(select(BaselineShot)):
        if text_hash(shot.text) in hashes:
            session.delete(shot)
            rows["baseline_shots"] += 1
    rows |= _delete_where(session, query_ids, prediction_ids)
    for query in session.exec(select(Query).where(Query.slack_user == user)) if user is not None else []:
        query.slack_user = query.slack_channel = query.slack_ts = query.slack_event_id = None  # another's text
        session.add(query)
    record = ForgetRecord(kind=kind, requested_by=requested_by, rows=dict(rows), trained_models=trained)
    session.add(record)
    session.flush()
    return record


def forget_place(session: Session, *, channel: str, ts: str, kind: str, requested_by: str,
                 record: bool) -> Counter[str]:
    """A message never stored (deleted while its routing waited for a retry, or never routed): the ledger's
    posts about it and the events that carry its text; the rows counted, and recorded when `record` is
    true or a post was about it."""
    rows: Counter[str] = Counter()
    if cleared := forget_events(session, events_at(session, {(channel, ts)})):
        rows["slack_events"] += cleared
    for post in posts_at(session, channel=channel, ts=ts):
        session.delete(post)
        rows["slack_posts"] += 1
    if record or rows["slack_posts"]:
        session.add(ForgetRecord(kind=kind, requested_by=requested_by, rows=dict(rows), trained_models=[]))
        session.flush()
    return rows


def _delete_where(session: Session, query_ids: list[int], prediction_ids: set[int]) -> Counter[str]:
    rows: Counter[str] = Counter()
    for table, name in ((EarlyRemoval, "early_removals"), (BaselinePrediction, "baseline_predictions"),
                        (ShadowPrediction, "shadow_predictions")):
        for row in session.exec(select(table).where(col(table.query_id).in_(query_ids))):
            session.delete(row)
            rows[name] += 1
    labels = list(session.exec(select(Label).where(col(Label.query_id).in_(query_ids))))
    for label in labels:
        label.superseded_by = None  # labels point at each other; cleared first so any delete order holds
        session.add(label)
    session.flush()
    for label in labels:
        session.delete(label)
    rows["labels"] += len(labels)
    predictions = session.exec(select(Prediction).where(
        or_(col(Prediction.query_id).in_(query_ids), col(Prediction.id).in_(prediction_ids))))
    for prediction in predictions:
        if prediction.query_id in query_ids or not _still_shown(session, prediction.id):
            session.delete(prediction)
            rows["predictions"] += 1
    session.flush()
    for query in session.exec(select(Query).where(col(Query.id).in_(query_ids))):
        session.delete(query)
        rows["queries"] += 1
    return rows


def _still_shown(session: Session, prediction_id: int | None) -> bool:
    return session.exec(select(SlackMessage.id).where(SlackMessage.prediction_id == prediction_id)).first() is not None


def models_trained_on(session: Session, query_ids: Iterable[int]) -> list[int]:
    """The registry's models whose adapter's snapshot names any of these queries (trained on, or held out)."""
    wanted = set(query_ids)
    found = []
    for model in session.exec(select(ModelVersion).order_by(col(ModelVersion.id))):
        snapshot = Path(model.adapter_path) / "snapshot.json"
        try:
            data: dict[str, Any] = json.loads(snapshot.read_text())
        except (OSError, ValueError):
            continue
        named = {row[0] for part in ("train", "trained_on", "holdout") for row in data.get(part, [])}
        if named & wanted:
            assert model.id is not None
            found.append(model.id)
    return found


def models_with_forgotten_data(session: Session) -> set[int]:
    return {m for record in session.exec(select(ForgetRecord)) for m in record.trained_models}


def export_user(session: Session, user: str) -> dict[str, Any]:
    """Every row held about one customer: their messages with text, verdicts, labels and the baseline's answers."""
    messages = messages_of_user(session, user)
    query_ids = {m.query_id for m in messages} | set(
        session.exec(select(Query.id).where(Query.slack_user == user)))  # type: ignore[arg-type]
    queries = list(session.exec(select(Query).where(col(Query.id).in_(query_ids))))

    def rows(table: Any) -> list[dict[str, Any]]:
        found = session.exec(select(table).where(col(table.query_id).in_(query_ids)).order_by(col(table.id)))
        return [r.model_dump(mode="json") for r in found]

    return {"user": user,
            "messages": [m.model_dump(mode="json") for m in messages],
            "queries": [q.model_dump(mode="json") for q in queries],
            "predictions": rows(Prediction), "labels": rows(Label), "baseline_answers": rows(BaselinePrediction),
            "shadow_predictions": rows(ShadowPrediction),
            "events": [{"event_id": e.event_id, "payload": e.payload} for e in events_about(session, messages, user)]}
