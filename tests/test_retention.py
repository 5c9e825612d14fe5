"""Retention: unlabelled texts deleted after SWITCHBOARD_RETENTION_DAYS by the trainer service's job, keeping what
metrics read and a salted hash that still finds the same words sent again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from store.db import transaction
from store.examples import add_examples
from store.retention import EXPIRED
from store.routed import Verdict, record_routed_message
from store.split import text_hash
from store.tables import Prediction, Query, SlackMessage
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
