"""A store created by the code of each earlier schema version (tests/old_stores) upgrades to today's, and its
outbox then works: on PostgreSQL in a server time zone that is not UTC (scripts/postgres.sh), where a
naive timestamp column once made every retry's compare-and-set miss."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from bot.delivery import DeliveryPolicy
from fakes.bot_server import message
from fakes.slack_api import FakeSlack
from store.db import make_engine, session_factory, transaction
from store.deliveries import RetryPolicy
from store.migrations import MIGRATIONS, migrate
from store.tables import SlackEvent, utcnow
from tests.old_stores import VERSIONS, load_old_store
from tests.support import scripted_bot, wait_until

POLICY = DeliveryPolicy(retry=RetryPolicy(first_delay=timedelta(0)))


@pytest.mark.parametrize("version", VERSIONS)
def test_an_old_store_upgrades_and_its_outbox_answers_a_failed_reply_once(version, database_url, home):
    home.mkdir(parents=True, exist_ok=True)
    load_old_store(database_url, version)
    engine = make_engine(database_url)
    try:
        assert migrate(engine) == list(range(version + 1, len(MIGRATIONS) + 1))
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                naive = conn.execute(text(
                    "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = "
                    "current_schema() AND data_type = 'timestamp without time zone'")).all()
                assert naive == [], f"naive timestamp columns left: {naive}"
        sessions = session_factory(engine)
        with FakeSlack() as slack:
            bot = scripted_bot(home, sessions, slack, policy=POLICY, SWITCHBOARD_AUDIT_RATE="0")
            try:
                slack.fail("chat.postMessage", error="internal_error", when=lambda body: "Routed to" in str(body))
                bot.event(message("charged twice", ts="50.0"), event_id="EvOLD")
                wait_until(lambda: _event(sessions, "EvOLD").retry_at, what="the failure's retry")
                wait_until(lambda: bot.outbox().run_due(), what="the outbox's retry")
                routed = [c for c in slack.calls_to("chat.postMessage") if c.ok and "Routed to" in str(c.body)]
                assert [c.body["thread_ts"] for c in routed] == ["50.0"]
                assert _event(sessions, "EvOLD").done_at is not None
            finally:
                bot.close()
    finally:
        engine.dispose()


def test_a_claim_left_in_hand_before_the_upgrade_is_answered_after_it(database_url, home):
    """Version 9's outbox took a claim with no recorded failure as due two minutes after it was made."""
    home.mkdir(parents=True, exist_ok=True)
    load_old_store(database_url, 9)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO slack_events (event_id, claimed_at, payload, attempts) "
                              "VALUES ('EvLEFT', :at, :payload, 0)"),
                         {"at": utcnow() - timedelta(minutes=3),
                          "payload": '{"type": "message", "channel": "CSUPPORT", "user": "UCUSTOMER", '
                                     '"text": "charged twice", "ts": "51.0", "channel_type": "channel"}'})
        migrate(engine)
        sessions = session_factory(engine)
        with FakeSlack() as slack:
            bot = scripted_bot(home, sessions, slack, policy=POLICY, SWITCHBOARD_AUDIT_RATE="0")
            try:
                assert bot.outbox().run_due() == 1
                assert [c.body["thread_ts"] for c in slack.calls_to("chat.postMessage") if c.body.get("thread_ts")] \
                    == ["51.0"]
            finally:
                bot.close()
    finally:
        engine.dispose()


def _event(sessions, event_id: str) -> SlackEvent:
    with transaction(sessions) as session:
        event = session.get(SlackEvent, event_id)
        assert event is not None
        return event
