"""What the store may hold of a customer's words: never a payment card number (whatever
`SWITCHBOARD_REDACT` says, unless `SWITCHBOARD_STORE_CARD_NUMBERS=true`), never a failed statement's
parameters in an error or a log line, and an unfurl under `baseline+store` changes nothing."""

from __future__ import annotations

import json
import logging

import pytest
from sqlmodel import select

from fakes import slack_events as shapes
from fakes.bot_server import message
from store.tables import Query, SlackEvent, SlackMessage
from tests.faults import Fault, on_statement
from tests.support import posts, route, run_cli, scripted_bot, stored_message, wait_until

CARD_NUMBER = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
CARD_TEXT = f"my parcel is late and you charged card {CARD_NUMBER} twice"


def rows_holding(sessions, needle: str) -> list[str]:
    """The stored queries' texts and events' payloads that hold `needle`, digits compared without separators."""
    def squeezed(text: str) -> str:
        return "".join(text.split())

    with sessions() as session:
        texts = [q.text for q in session.exec(select(Query))]
        payloads = [json.dumps(e.payload) for e in session.exec(select(SlackEvent)) if e.payload]
    return [t for t in [*texts, *payloads] if squeezed(needle) in squeezed(t)]


def test_a_routed_card_number_is_masked_in_the_store_under_the_default_settings(home, sessions, slack):
    bot = scripted_bot(home, sessions, slack, SWITCHBOARD_AUDIT_RATE="0")  # SWITCHBOARD_REDACT=baseline
    try:
        route(bot, CARD_TEXT, ts="1700005000.000100")
        wait_until(lambda: posts(slack, "CSHIPPING"), what="the forward")
        pending = message(f"refund please, card {CARD_NUMBER}", ts="1700005001.000100")
        assert bot.event(pending, event_id="EvPENDING").status == 200
        bot.drain()
    finally:
        bot.close()
    assert rows_holding(sessions, CARD_DIGITS) == []
    with sessions() as session:
        stored = [q.text for q in session.exec(select(Query).order_by(Query.id))]
    assert stored[0] == "my parcel is late and you charged card <CARD> twice"
    assert bot.deps.router.seen[0] == stored[0]  # the model reads what the store keeps, as training does


def test_only_the_explicit_setting_stores_card_numbers(home, sessions, slack):
    bot = scripted_bot(home, sessions, slack, SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_REDACT="off",
                       SWITCHBOARD_STORE_CARD_NUMBERS="true")
    try:
        route(bot, CARD_TEXT, ts="1700005002.000100")
    finally:
        bot.close()
    with sessions() as session:
        assert [q.text for q in session.exec(select(Query))] == [CARD_TEXT]


def test_an_imported_card_number_is_masked_in_the_store(tmp_path, home):
    data = tmp_path / "examples.csv"
    data.write_text(f'text,label\n"{CARD_TEXT}",Billing\n"card 4111.1111.1111.1111 was declined",Billing\n'
                    "where is my parcel,Shipping\n")
    env = {"SWITCHBOARD_HOME": str(home)}
    assert json.loads(run_cli("import", str(data), "--json", env=env).stdout)["added"] == 3
    exported = run_cli("export", env=env).stdout
    assert CARD_DIGITS not in exported.replace(" ", "").replace(".", "")
    assert [json.loads(line)["text"] for line in exported.splitlines()][:2] == [
        "my parcel is late and you charged card <CARD> twice", "card <CARD> was declined"]


def test_an_upgrade_masks_the_card_numbers_a_store_kept_before(database_url):
    from sqlalchemy import text as sql

    from store import migrations
    from store.db import make_engine, session_factory, transaction
    from store.split import text_hash

    engine = make_engine(database_url)
    before = migrations.MIGRATIONS.index(migrations._m017_card_numbers_masked)
    migrations.migrate(engine, migrations.MIGRATIONS[:before])
    masked_twin = "card <CARD> was declined"
    with engine.begin() as conn:  # as the store was: texts and an event payload with the card in clear
        for i, words in enumerate((CARD_TEXT, "card 4111.1111.1111.1111 was declined", masked_twin, "no card here")):
            conn.execute(sql("INSERT INTO queries (text, text_hash, received_at) VALUES (:t, :h, CURRENT_TIMESTAMP)"),
                         {"t": words, "h": text_hash(words) if i != 2 else text_hash(masked_twin)})
    with transaction(session_factory(engine)) as session:
        session.add(SlackEvent(event_id="EvOLD", payload={"type": "message", "text": CARD_TEXT,
                                                          "blocks": [{"elements": [{"text": CARD_NUMBER}]}]}))
    migrations.migrate(engine)
    sessions = session_factory(engine)
    assert rows_holding(sessions, CARD_DIGITS) == []
    with sessions() as session:
        rows = {q.text: q.text_hash for q in session.exec(select(Query))}
        payload = session.get(SlackEvent, "EvOLD").payload
    engine.dispose()
    assert rows["my parcel is late and you charged card <CARD> twice"] == text_hash(
        "my parcel is late and you charged card <CARD> twice")  # found again by the same words
    assert rows["no card here"] == text_hash("no card here")
    assert payload["text"] == "my parcel is late and you charged card <CARD> twice"
    assert payload["blocks"][0]["elements"][0]["text"] == "<CARD>"


def test_a_failed_statement_keeps_the_customers_text_out_of_last_error_and_the_logs(home, sessions, slack, caplog):
    text = "my parcel is late, the courier left it with Mrs Marple at the blue door"
    on_statement(sessions().get_bind(), Fault("always"), "INSERT INTO queries")
    bot = scripted_bot(home, sessions, slack, SWITCHBOARD_AUDIT_RATE="0")
    try:
        with caplog.at_level(logging.INFO):
            assert bot.event(message(text, ts="1700005003.000100"), event_id="EvFAILS").status == 200
            bot.drain()
            error = wait_until(lambda: (event := sessions().get(SlackEvent, "EvFAILS")) and event.last_error,
                               what="the failure recorded")
    finally:
        bot.close()
    assert "INSERT INTO queries" in error  # the statement is named...
    assert "Mrs Marple" not in error  # ...never its values
    assert "INSERT INTO queries" in caplog.text and "Mrs Marple" not in caplog.text


@pytest.mark.parametrize("previous", [True, False], ids=["as Slack sends it", "without previous_message"])
def test_an_unfurl_under_baseline_and_store_changes_nothing(home, sessions, slack, previous):
    bot = scripted_bot(home, sessions, slack, SWITCHBOARD_AUDIT_RATE="0", SWITCHBOARD_REDACT="baseline+store")
    original = message("my parcel https://shop.example/order/42 is late, write to jane@example.com",
                       ts="1700005004.000100")
    try:
        assert bot.event(original).status == 200
        bot.drain()
        wait_until(lambda: posts(slack, "CSHIPPING"), what="the forward")
        with sessions() as session:
            before = ([q.text for q in session.exec(select(Query))],
                      [(m.id, m.query_id, m.reply_ts, m.routed_to) for m in session.exec(select(SlackMessage))])
        assert before[0] == ["my parcel <URL> is late, write to <EMAIL>"]  # the stored text is not the raw one
        calls = len(slack.calls)
        unfurl = shapes.unfurled(original, url="https://shop.example/order/42")
        if not previous:
            unfurl.pop("previous_message")
        assert bot.event(unfurl, event_id="EvUNFURL").status == 200
        bot.drain()
    finally:
        bot.close()
    assert len(slack.calls) == calls  # no post, no chat.update, no chat.delete
    assert len(bot.deps.router.seen) == 1  # classified once
    with sessions() as session:
        after = ([q.text for q in session.exec(select(Query))],
                 [(m.id, m.query_id, m.reply_ts, m.routed_to) for m in session.exec(select(SlackMessage))])
    assert after == before
    assert stored_message(sessions, "1700005004.000100").routed_to == "Shipping"
