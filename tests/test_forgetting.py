"""A customer forgotten on request (`switchboard forget`, `export --user`), and messages deleted or edited in Slack,
through the real Bolt app with the loopback Slack; on SQLite and, with --store=postgres, PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text as sql
from sqlmodel import select

from fakes.bot_server import message, reaction
from store.db import transaction
from store.registry import get_model, promote, register_model
from store.tables import ForgetRecord, Query, SlackEvent, SlackMessage, SQLModel
from tests.support import AGENT, posts, route, run_cli, stored_message, text_of, wait_until

SECRET_A = "charged twice, I am Ann Example at ann@example.com"
SECRET_B = "my parcel is late, Ann again"
SHARED = "refund please"  # written by both customers: the other one's copy stays


def everything_stored(sessions) -> str:
    """Every row of every table, as text: where a forgotten text must not be found."""
    with sessions() as session:
        conn = session.connection()
        dumped = [repr(row) for table in SQLModel.metadata.sorted_tables
                  for row in conn.execute(sql(f'SELECT * FROM "{table.name}"'))]
    return "\n".join(dumped)


def in_slack(slack) -> str:
    """The bot's posts in Slack (a customer's own message is theirs to delete)."""
    return json.dumps([m for m in slack.messages.values() if m.get("bot_id")])


def cli_env(home: Path, database_url: str, slack) -> dict[str, str]:
    return {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_API_URL": slack.base_url}


def test_forgetting_a_customer_removes_their_texts_everywhere_and_keeps_only_a_record(
        home, database_url, sessions, start_bot, tmp_path):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    slack = bot.slack
    route(bot, SECRET_A, ts="1700000500.000100")
    route(bot, SECRET_B, ts="1700000500.000200")
    route(bot, SHARED, ts="1700000500.000300")
    assert bot.event(reaction("reaction_added", "package", user=AGENT, ts="1700000500.000100")).status == 200
    slack.wait_for("chat.update", 1)  # the reroute is labelled and shown
    other = message(SHARED, ts="1700000500.000400", user="UOTHER")
    assert bot.event(other).status == 200
    wait_until(lambda: (m := stored_message(sessions, "1700000500.000400")) and m.reply_ts, what="the other's reply")
    with sessions() as session:
        first_query = stored_message(sessions, "1700000500.000100").query_id
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "snapshot.json").write_text(json.dumps({"train": [[first_query, "Shipping"]], "holdout": []}))
    with transaction(sessions) as session:
        model = register_model(session, adapter_path=str(adapter), base_model="b", labels=["Billing"],
                               hyperparameters={}, metrics={"macro_f1": 0.9}, parent_id=None)
        promote(session, model_id=model.id)
    wait_until(lambda: SECRET_A in in_slack(slack) and SECRET_B in in_slack(slack), what="the forwards")
    assert SECRET_A in everything_stored(sessions)

    env = cli_env(home, database_url, slack)
    before = json.loads(run_cli("export", "--user", "UCUSTOMER", env=env).stdout)
    assert {q["text"] for q in before["queries"]} == {SECRET_A, SECRET_B, SHARED}
    assert len(before["messages"]) == 3 and before["labels"] and before["predictions"]

    done = run_cli("forget", "--user", "UCUSTOMER", "--json", env=env)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["rows"]["slack_messages"] == 3 and outcome["rows"]["queries"] == 2
    assert outcome["trained_models"] == [model.id] and outcome["slack_posts_pending"] == []
    stored, posted = everything_stored(sessions), in_slack(slack)
    for secret in (SECRET_A, SECRET_B, "ann@example.com"):
        assert secret not in stored, [line for line in stored.splitlines() if secret in line]
        assert secret not in posted, [m for m in slack.messages.values() if secret in json.dumps(m)]
    assert "UCUSTOMER" not in stored
    after = json.loads(run_cli("export", "--user", "UCUSTOMER", env=env).stdout)
    assert after["messages"] == after["queries"] == after["labels"] == after["predictions"] == []
    with sessions() as session:  # the other customer's message, text and forward stay
        assert [q.text for q in session.exec(select(Query))] == [SHARED]
        assert [m.user for m in session.exec(select(SlackMessage))] == ["UOTHER"]
        [record] = session.exec(select(ForgetRecord)).all()
    assert record.kind == "user" and record.requested_by.startswith("cli:") and record.trained_models == [model.id]
    with sessions() as session:  # the model's snapshot, rewritten into a new folder, no longer names the text
        rewritten = Path(get_model(session, model_id=model.id).adapter_path)
    assert not adapter.exists() and json.loads((rewritten / "snapshot.json").read_text())["train"] == []
    assert "\"thread_ts\": \"1700000500.000400\"" in posted  # the reply to the other customer stays
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert status["forgotten_data_in_active_model"] is True
    assert "trained on data since forgotten" in run_cli("status", env=env).stdout

    again = run_cli("forget", "--user", "UCUSTOMER", "--json", env=env)  # nothing left: still fine, recorded
    assert again.returncode == 0 and json.loads(again.stdout)["rows"].get("queries", 0) == 0


def test_forgetting_one_message_by_permalink_and_bad_input(home, database_url, sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, SECRET_A, ts="1700000600.000100")
    route(bot, SECRET_B, ts="1700000600.000200")
    wait_until(lambda: SECRET_A in in_slack(bot.slack) and SECRET_B in in_slack(bot.slack), what="the forwards")
    env = cli_env(home, database_url, bot.slack)
    link = "https://example.slack.com/archives/CSUPPORT/p1700000600000100"
    done = run_cli("forget", "--message", link, env=env)
    assert done.returncode == 0 and "2 of the bot's posts deleted in Slack" in done.stdout, done.stdout
    stored = everything_stored(sessions)
    assert SECRET_A not in stored and SECRET_B in stored and SECRET_A not in in_slack(bot.slack)
    missing = run_cli("forget", "--message", "1700000999.000000", env=env)
    assert missing.returncode == 2 and "no stored message at 1700000999.000000" in missing.stderr
    assert run_cli("forget", env=env).returncode == 2  # --user or --message is required
    assert SECRET_B in everything_stored(sessions)


def test_a_message_deleted_in_slack_is_forgotten_with_the_bots_posts_about_it(home, sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, SECRET_A, ts="1700000700.000100")
    wait_until(lambda: SECRET_A in in_slack(bot.slack), what="the forward")
    deleted = {"type": "message", "subtype": "message_deleted", "channel": "CSUPPORT", "channel_type": "channel",
               "hidden": True, "deleted_ts": "1700000700.000100", "ts": "1700000701.000000",
               "previous_message": {"type": "message", "user": "UCUSTOMER", "text": SECRET_A,
                                    "ts": "1700000700.000100"}}
    assert bot.event(deleted).status == 200
    bot.slack.wait_for("chat.delete", 2)  # the reply and the forward
    wait_until(lambda: SECRET_A not in everything_stored(sessions), what="the message forgotten")
    assert SECRET_A not in in_slack(bot.slack)
    with sessions() as session:
        [record] = session.exec(select(ForgetRecord)).all()
    assert record.kind == "message_deleted" and record.rows["slack_messages"] == 1


def edited(text: str, ts: str, *, user: str = "UCUSTOMER") -> dict:
    return {"type": "message", "subtype": "message_changed", "channel": "CSUPPORT", "channel_type": "channel",
            "hidden": True, "ts": "1700000801.000000",
            "message": {"type": "message", "user": user, "text": text, "ts": ts, "edited": {"user": user}},
            "previous_message": {"type": "message", "user": user, "text": "(before)", "ts": ts}}


def test_an_edit_before_anyone_labelled_it_routes_the_new_text_and_edits_the_reply_and_the_forward(
        sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    reply = route(bot, "my parcel is late", ts="1700000800.000100")
    assert "Shipping" in text_of(reply)
    wait_until(lambda: posts(bot.slack, "CSHIPPING"), what="the forward")
    assert bot.event(edited("charged twice on my card", "1700000800.000100")).status == 200
    bot.slack.wait_for("chat.update", 1)
    wait_until(lambda: posts(bot.slack, "CBILLING"), what="the new forward")
    assert "my parcel is late" not in everything_stored(sessions)
    assert "my parcel is late" not in in_slack(bot.slack)  # the old forward was deleted
    shown = next(m for m in bot.slack.messages.values() if m.get("ts") == reply_ts(sessions, "1700000800.000100"))
    assert "Routed to *Billing*" in text_of(shown) and "Routed to *Shipping*" not in text_of(shown)
    assert len(posts(bot.slack, "CSUPPORT")) == 1  # the reply was edited, not posted again


def test_an_edit_after_an_agent_labelled_it_changes_nothing(sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, "my parcel is late", ts="1700000900.000100")
    wait_until(lambda: posts(bot.slack, "CSHIPPING"), what="the forward")
    assert bot.event(reaction("reaction_added", "moneybag", user=AGENT, ts="1700000900.000100")).status == 200
    bot.slack.wait_for("chat.update", 1)
    assert bot.event(edited("charged twice on my card", "1700000900.000100"), event_id="EvEdit").status == 200
    wait_until(lambda: event_done(sessions, "EvEdit"), what="the edit handled")
    with sessions() as session:
        texts = [q.text for q in session.exec(select(Query))]
    assert texts == ["my parcel is late"] and not bot.slack.calls_to("chat.delete")


def event_done(sessions, event_id: str) -> bool:
    with sessions() as session:
        event = session.get(SlackEvent, event_id)
        return event is not None and event.done_at is not None


def reply_ts(sessions, ts: str) -> str:
    return stored_message(sessions, ts).reply_ts


def test_after_a_forget_the_next_run_does_not_build_on_a_model_trained_on_the_forgotten_rows(settings, sessions):
    from store.examples import add_examples
    from tests.support import LOOP, MORE, seed, trainer_deps
    from trainer.alternatives import AlternativeSet
    from trainer.pipeline import RunOptions, run_training

    options = RunOptions(config=LOOP, progress=False, alternatives=AlternativeSet.NONE)
    deps = trainer_deps(settings, sessions)
    seed(sessions)
    first = run_training(deps, options)
    assert first.promoted, first.reason
    with transaction(sessions) as session:
        add_examples(session, examples=MORE[:6])
    warm = run_training(deps, options)
    assert warm.training["warm_start_model"] == first.model_id  # what a run does without a forget
    with transaction(sessions) as session:
        active = warm.model_id if warm.promoted else first.model_id
        session.add(ForgetRecord(kind="user", requested_by="test", trained_models=[active]))
        add_examples(session, examples=MORE[6:12])
    cold = run_training(deps, options)
    assert cold.training["warm_start_model"] is None and cold.training["replay"] == 0
