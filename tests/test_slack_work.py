"""Forgetting never waits on Slack: the rows go at once and each of the bot's posts to delete is durable work
(store/slack_work.py, bot/slack_work.py), tried at once, retried by the outbox, handed to the alert channel
when the retries run out. A file shared without words is stored so that forgetting finds its triage post,
and an approval request quoting a forgotten text is deleted and asked anew. Through the real CLI, the real
Bolt app and the loopback Slack; on SQLite and, with --store=postgres, PostgreSQL."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text as sql
from sqlalchemy import update
from sqlmodel import select

from bot.outbox import OutboxWorker
from cli.compose import Context, approval_poster
from core.settings import Settings
from core.vocabulary import FILE_ONLY_TEXT
from fakes.bot_server import message, reaction
from fakes.slack_events import tombstone
from store.db import transaction
from store.deliveries import RetryPolicy
from store.examples import labelled_examples
from store.registry import register_model
from store.runs import finish_run, start_run
from store.shadow import await_approval, start_pending
from store.slack_work import pending_work
from store.tables import ModelStatus, RunStatus, SlackEvent, SlackWork, SQLModel, TrainingRun, utcnow
from tests.support import AGENT, posts, route, run_cli, stored_message, text_of, wait_until
from trainer.approval import ask_for_approvals

CARD = "4111 1111 1111 1111"
SECRET = f"charged twice on card {CARD}, Ann Example"
OTHER = "my parcel is late, Ann again"
MAILED = "charged twice, write to ann@example.com please"  # the store keeps e-mail addresses under `baseline`
QUICK = RetryPolicy(max_attempts=3, first_delay=timedelta(0), max_delay=timedelta(0))


def everything_stored(sessions) -> str:
    with sessions() as session:
        conn = session.connection()
        return "\n".join(repr(row) for table in SQLModel.metadata.sorted_tables
                         for row in conn.execute(sql(f'SELECT * FROM "{table.name}"')))


def in_slack(slack) -> str:
    """The bot's posts in Slack now (a customer's own message is theirs to delete)."""
    return json.dumps([m for m in slack.messages.values() if m.get("bot_id")])


def closed_port_url() -> str:
    """A loopback URL nothing listens on: every call is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/"


def cli_env(home: Path, database_url: str, api_url: str, **extra: str) -> dict[str, str]:
    return {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_API_URL": api_url, **extra}


def owed(sessions) -> list[SlackWork]:
    with sessions() as session:
        return pending_work(session)


def make_due(sessions) -> None:
    with transaction(sessions) as session:
        session.exec(update(SlackWork).values(retry_at=utcnow() - timedelta(seconds=1)))


def event_done(sessions, event_id: str) -> bool:
    with sessions() as session:
        event = session.get(SlackEvent, event_id)
        return event is not None and event.done_at is not None


def test_forget_with_slack_unreachable_forgets_every_row_and_the_outbox_deletes_the_posts_later(
        home, database_url, sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, SECRET, ts="1700001000.000100")
    route(bot, OTHER, ts="1700001000.000200")
    wait_until(lambda: SECRET in in_slack(bot.slack) and OTHER in in_slack(bot.slack), what="the forwards")

    done = run_cli("forget", "--user", "UCUSTOMER", "--json", env=cli_env(home, database_url, closed_port_url()))
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["rows"]["slack_messages"] == 2 and outcome["slack_posts_deleted"] == 0
    assert len(outcome["slack_posts_pending"]) == 4  # two replies, two forwards
    stored = everything_stored(sessions)
    assert SECRET not in stored and OTHER not in stored and "UCUSTOMER" not in stored
    assert SECRET in in_slack(bot.slack)  # not yet
    assert {w.reason for w in owed(sessions)} == {"reply", "forward"}
    assert not any(SECRET in repr(w) or CARD in repr(w) for w in owed(sessions))  # where, never what

    make_due(sessions)  # the CLI's failure set a retry time; the bot's outbox takes them when it comes
    assert bot.outbox().run_slack_work() == 4
    assert SECRET not in in_slack(bot.slack) and OTHER not in in_slack(bot.slack)
    assert owed(sessions) == []


def test_a_transient_chat_delete_failure_is_retried_until_the_post_is_gone(home, database_url, sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, SECRET, ts="1700001100.000100")
    wait_until(lambda: SECRET in in_slack(bot.slack), what="the forward")
    bot.slack.fail("chat.delete", "internal_error", times=1)
    link = "https://example.slack.com/archives/CSUPPORT/p1700001100000100"
    done = run_cli("forget", "--message", link, env=cli_env(home, database_url, bot.slack.base_url))
    assert done.returncode == 0, done.stderr
    assert "1 of the bot's posts deleted in Slack" in done.stdout
    assert "1 Slack post still to delete: the bot retries them" in done.stdout and "internal_error" in done.stdout
    assert SECRET not in everything_stored(sessions) and len(json.loads(in_slack(bot.slack))) == 1  # of two
    outbox = bot.outbox()
    assert outbox.run_slack_work() == 0  # not due yet: backing off
    make_due(sessions)
    assert outbox.run_slack_work() == 1
    assert in_slack(bot.slack) == "[]" and owed(sessions) == []


def test_a_deletion_in_slack_forgets_the_rows_at_once_and_gives_the_posts_up_to_the_alert_channel(
        sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_ALERT_CHANNEL="CALERT")
    original = message(SECRET, ts="1700001200.000100")
    route(bot, SECRET, ts=original["ts"])
    reply_ts = stored_message(sessions, original["ts"]).reply_ts
    bot.slack.fail("chat.delete", "internal_error", times=100)
    assert bot.event(tombstone(original, replies=[reply_ts]), event_id="EvGONE").status == 200
    bot.drain()  # the event is done once its rows are forgotten, before the Slack calls: wait for those too
    assert event_done(sessions, "EvGONE")
    with sessions() as session:
        assert session.get(SlackEvent, "EvGONE").attempts == 1  # done at the first attempt: nothing to retry
    assert SECRET not in everything_stored(sessions) and len(owed(sessions)) == 2
    outbox = OutboxWorker(bot.delivery, slack_work=QUICK)  # three tries in all
    while owed(sessions):
        make_due(sessions)
        outbox.run_slack_work()
    alerts = [text_of(p) for p in posts(bot.slack, "CALERT")]
    assert len(alerts) == 2 and all("please delete it by hand" in a for a in alerts), alerts
    assert any(reply_ts in a for a in alerts) and not any(CARD in a or "charged" in a for a in alerts)


def test_a_deletion_whose_chat_delete_fails_once_ends_with_the_post_deleted_by_a_retry(sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    original = message(SECRET, ts="1700001300.000100")
    route(bot, SECRET, ts=original["ts"])
    bot.slack.fail("chat.delete", "internal_error", times=1)
    assert bot.event(tombstone(original, replies=[stored_message(sessions, original["ts"]).reply_ts]),
                     event_id="EvGONE").status == 200
    bot.drain()  # the event is done once its rows are forgotten, before the Slack calls: wait for those too
    assert event_done(sessions, "EvGONE")
    assert SECRET not in everything_stored(sessions) and len(json.loads(in_slack(bot.slack))) == 1  # of two
    make_due(sessions)
    assert bot.outbox().run_slack_work() == 1
    assert in_slack(bot.slack) == "[]" and owed(sessions) == []


def test_a_file_without_words_is_stored_so_forgetting_its_author_deletes_its_triage_post(
        home, database_url, sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    files = [{"id": "F1", "name": "passport-jane-doe.jpg", "mimetype": "image/jpeg"}]
    assert bot.event(message("", ts="1700001400.000100", subtype="file_share", files=files)).status == 200
    bot.drain()
    [copy] = wait_until(lambda: posts(bot.slack, "CTRIAGE"), what="the triage copy")
    assert "passport-jane-doe.jpg" in text_of(copy)  # agents see what was sent
    stored = stored_message(sessions, "1700001400.000100")
    assert stored is not None and stored.user == "UCUSTOMER" and stored.reply_ts and stored.routed_to is None
    assert "passport" not in everything_stored(sessions)  # the file's name can be personal: not stored
    copy_ts = next(ts for (channel, ts) in bot.slack.messages if channel == "CTRIAGE")
    assert bot.event(reaction("reaction_added", "moneybag", user=AGENT, ts=copy_ts, channel="CTRIAGE")).status == 200
    bot.drain()
    with sessions() as session:
        assert FILE_ONLY_TEXT in everything_stored(sessions)
        assert FILE_ONLY_TEXT not in [e.text for e in labelled_examples(session)]  # nothing to learn from

    done = run_cli("forget", "--user", "UCUSTOMER", "--json", env=cli_env(home, database_url, bot.slack.base_url))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"]["slack_messages"] == 1
    assert "passport" not in in_slack(bot.slack) and in_slack(bot.slack) == "[]"


def test_an_approval_request_quotes_redacted_texts_and_forgetting_one_deletes_it_and_asks_again(
        home, database_url, sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, MAILED, ts="1700001500.000100")
    route(bot, "my parcel is late", ts="1700001500.000200")
    quoted = [stored_message(sessions, ts).query_id for ts in ("1700001500.000100", "1700001500.000200")]
    with transaction(sessions) as session:
        model = register_model(session, adapter_path="m2", base_model="tiny", labels=["Billing", "Shipping"],
                               hyperparameters={}, metrics={}, parent_id=None)
        run = start_run(session, trigger="test")
        finish_run(session, run_id=run.id, status=RunStatus.SHADOW, reason="in shadow", report={},
                   candidate_id=model.id)
        start_pending(session, model_id=model.id, stage=ModelStatus.SHADOW)
        await_approval(session, model_id=model.id, reason="waiting", evidence={
            "messages": 2, "agreement": 0.0, "audited": 2, "per_department": {},
            "only_candidate_right": quoted, "only_live_right": []})
        model_id = model.id
    settings = Settings(SWITCHBOARD_HOME=home, DATABASE_URL=database_url, SLACK_BOT_TOKEN="xoxb-test",
                        SLACK_API_URL=bot.slack.base_url, SWITCHBOARD_ALERT_CHANNEL="CALERT")
    ask = approval_poster(Context(settings=settings, sessions=sessions))
    assert ask is not None and ask_for_approvals(sessions, ask) == [model_id]
    [request] = posts(bot.slack, "CALERT")
    shown = text_of(request)
    assert "charged twice, write to &lt;EMAIL&gt; please" in shown and "ann@example.com" not in shown
    assert ">my parcel is late" in shown

    env = cli_env(home, database_url, bot.slack.base_url)
    done = run_cli("forget", "--message", "https://x.slack.com/archives/CSUPPORT/p1700001500000100", env=env)
    assert done.returncode == 0, done.stderr
    assert not [m for (channel, _), m in bot.slack.messages.items() if channel == "CALERT"]  # the request is gone
    assert "charged twice" not in in_slack(bot.slack)
    with sessions() as session:
        run_row = session.exec(select(TrainingRun).where(TrainingRun.candidate_id == model_id)).one()
        assert run_row.approval_posted_at is None  # still waiting: the admins are asked again
    assert ask_for_approvals(sessions, ask) == [model_id]
    again = text_of(posts(bot.slack, "CALERT")[-1])
    assert ">(forgotten)" in again and ">my parcel is late" in again and "charged" not in again
    assert f"approve {model_id}" in again
