"""Retention: unlabelled texts deleted after SWITCHBOARD_RETENTION_DAYS by the trainer service's job, keeping what
metrics read and a salted hash that still finds the same words sent again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from store.baseline_cache import label_if_unlabelled
from store.db import transaction
from store.examples import add_examples, get_department, label_query
from store.implicit import add_implicit_labels
from store.retention import EXPIRED
from store.routed import Verdict, record_routed_message
from store.split import text_hash
from store.tables import Label, LabelSource, Prediction, Query, SlackMessage
from tests.support import route, run_cli, stored_message, wait_until
from trainer.schedule import ScheduleConfig, build_scheduler, expire_old_texts

NOW = datetime.now(UTC)


def routed(sessions, text: str, ts: str, *, days_ago: float) -> SlackMessage:
    verdict = Verdict(department="Billing", confidence=0.9, scores={"Billing": 0.9, "Orders": 0.1}, latency_ms=2.0)
    message = record_routed_message(sessions, text=text, channel="C1", ts=ts, user="UCUSTOMER", event_id=None,
                                    verdict=verdict, routed_to="Billing", audit=False)
    with transaction(sessions) as session:
        query = session.get(Query, message.query_id)
        query.received_at = NOW - timedelta(days=days_ago)
        session.add(query)
    return message


def test_old_unlabelled_texts_go_and_what_metrics_need_stays(sessions):
    with transaction(sessions) as session:
        add_examples(session, examples=[("an old labelled question", "Billing"), ("another one", "Orders")])
        for query in session.exec(select(Query)):
            query.received_at = NOW - timedelta(days=400)
            session.add(query)
    old = routed(sessions, "my card number is 4111 1111 1111 1111", "1.0", days_ago=40)
    recent = routed(sessions, "where is my parcel", "2.0", days_ago=5)

    assert expire_old_texts(sessions, 30, now=NOW) == 1
    assert expire_old_texts(sessions, 30, now=NOW) == 0  # nothing is done twice
    with sessions() as session:
        texts = {q.text for q in session.exec(select(Query))}
        expired = session.get(Query, old.query_id)
        kept = session.get(SlackMessage, old.id)
        prediction = session.get(Prediction, kept.prediction_id)
    assert texts == {"an old labelled question", "another one", EXPIRED, "where is my parcel"}
    assert expired.text_hash.startswith("salted:") and expired.text_hash != text_hash(
        "my card number is 4111 1111 1111 1111") and expired.slack_user is None
    assert kept.user is None and kept.routed_to == "Billing" and kept.created_at is not None
    assert prediction.department == "Billing" and prediction.confidence == 0.9
    assert recent.query_id != old.query_id

    again = routed(sessions, "My card number is  4111 1111 1111 1111", "3.0", days_ago=0)  # the same words
    assert again.query_id == old.query_id
    with sessions() as session:
        assert session.get(Query, old.query_id).text == "My card number is  4111 1111 1111 1111"


def test_the_trainer_service_schedules_retention_only_when_it_is_set(sessions):
    def never(trigger):
        raise AssertionError("no run here")

    without = build_scheduler(sessions, never, ScheduleConfig())
    with_days = build_scheduler(sessions, never, ScheduleConfig(retention_days=30))
    assert "retention" not in {job.id for job in without.get_jobs()}
    job = with_days.get_job("retention")
    assert job is not None and job.args[1] == 30 and job.func is expire_old_texts


def soon() -> datetime:
    """A grace window that every message routed so far has passed (NOW is the module's import time)."""
    return datetime.now(UTC) + timedelta(minutes=1)


def test_inferred_labels_expire_with_their_text_and_a_persons_label_keeps_it(sessions):
    """Implicit labels (a route no one corrected) and distilled ones (the baseline's) are no person's
    judgement: their texts expire like unlabelled ones, labels and all."""
    with transaction(sessions) as session:
        add_examples(session, examples=[("an old labelled question", "Billing"), ("another one", "Orders")])
    silent = routed(sessions, "my card number is 4111 1111 1111 1111", "1.0", days_ago=40)
    with transaction(sessions) as session:
        assert add_implicit_labels(session, routed_before=soon(), active_model_id=None, min_model_confidence=0.0) == 1
    distilled = routed(sessions, "please close the account of zebediah", "2.0", days_ago=40)
    judged = routed(sessions, "refund the duplicate charge", "3.0", days_ago=40)
    with transaction(sessions) as session:
        assert label_if_unlabelled(session, query_id=distilled.query_id, department_name="Orders", model="gpt-4o")
        label_query(session, query=session.get(Query, judged.query_id),
                    department=get_department(session, name="Billing"), source=LabelSource.AGENT, author="UAGENT1")
        sources = {q: s for q, s in session.exec(select(Label.query_id, Label.source))}
    assert sources[silent.query_id] == LabelSource.IMPLICIT and sources[distilled.query_id] == LabelSource.BASELINE

    assert expire_old_texts(sessions, 30, now=NOW) == 2
    with sessions() as session:
        texts = {q.text for q in session.exec(select(Query))}
        left = {q: s for q, s in session.exec(select(Label.query_id, Label.source))}
    assert texts == {"an old labelled question", "another one", "refund the duplicate charge", EXPIRED}
    assert silent.query_id not in left and distilled.query_id not in left  # no label of an empty text trains
    assert left[judged.query_id] == LabelSource.AGENT
    with transaction(sessions) as session:  # and nothing labels the empty texts again
        assert add_implicit_labels(session, routed_before=soon(), active_model_id=None, min_model_confidence=0.0) == 0
    assert expire_old_texts(sessions, 30, now=NOW) == 0


def test_forget_user_still_finds_an_expired_message_and_deletes_its_forward(home, database_url, sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    secret = "my parcel never came, call me on +44 7700 900123"
    route(bot, secret, ts="1700000900.000100")
    forwards = lambda: [m for m in bot.slack.messages.values() if m.get("bot_id") and secret in json.dumps(m)]  # noqa: E731
    wait_until(forwards, what="the forward")
    with transaction(sessions) as session:
        query = session.get(Query, stored_message(sessions, "1700000900.000100").query_id)
        query.received_at = NOW - timedelta(days=40)
        session.add(query)
    assert expire_old_texts(sessions, 30, now=NOW) == 1
    expired = stored_message(sessions, "1700000900.000100")
    assert expired.user is None and expired.user_hash.startswith("salted:") and "UCUSTOMER" not in expired.user_hash

    env = {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-test",
           "SLACK_API_URL": bot.slack.base_url}
    done = run_cli("forget", "--user", "UCUSTOMER", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"]["slack_messages"] == 1
    wait_until(lambda: not forwards(), what="the expired message's posts deleted in Slack")
    assert stored_message(sessions, "1700000900.000100") is None
