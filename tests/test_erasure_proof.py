"""The erasure proof (`forget … --verify`): after forgetting, no table, database byte, file under SWITCHBOARD_HOME or
bot's post in the loopback Slack holds a forgotten text's details or rarer words; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from fakes.bot_server import message, reaction
from store.db import configure_sqlite_connection, transaction
from store.erasure_proof import Matcher, Proof, prove, search_values
from store.erasure_traces import traces_of
from store.registry import register_model
from store.tables import Label, Query
from tests.support import AGENT, DEPARTMENTS, FAST, route, run_cli, seed, stored_message, trainer_deps, wait_until
from trainer.alternatives import AlternativeSet
from trainer.pipeline import RunOptions, run_training
from trainer.schedule import expire_old_texts

ROUTED = "please send the zanzibarian invoice again to ann.quokka@example.org"
RELABELLED = "my parcel with the marmoset figurine is late, ring +44 7911 123456"
AUDITED = "wire it back to GB82 WEST 1234 5698 7654 32 for the albatross subscription"
BEFORE_EDIT = "the platypus boutique took 4111 1111 1111 1111 twice"
AFTER_EDIT = "the platypus boutique double charged me, quixotic wombat fees"
EXPIRED = "where did my narwhal lamp go, order placed at the capybara outlet"
OTHERS = "charged for the axolotl aquarium, write to bert.okapi@example.net"
PLANTED = [ROUTED, RELABELLED, AUDITED, BEFORE_EDIT, AFTER_EDIT, EXPIRED, OTHERS]


def edit(text: str, ts: str) -> dict:
    return {"type": "message", "subtype": "message_changed", "channel": "CSUPPORT", "channel_type": "channel",
            "hidden": True, "ts": f"{float(ts) + 5:.6f}",
            "message": {"type": "message", "user": "UCUSTOMER", "text": text, "ts": ts,
                        "edited": {"user": "UCUSTOMER"}},
            "previous_message": {"type": "message", "user": "UCUSTOMER", "text": BEFORE_EDIT, "ts": ts}}


def labelled(sessions, ts: str) -> bool:
    """Whether the message at `ts` has a label (a reaction on an audited message is an audit's answer too)."""
    query_id = stored_message(sessions, ts).query_id
    with sessions() as session:
        return session.exec(select(Label).where(Label.query_id == query_id)).first() is not None


def bot_posts(slack) -> list[dict]:
    return [m for m in slack.messages.values() if m.get("bot_id")]


def places(proof_json: dict) -> list[str]:
    return [f"{p['place']}: {', '.join(p['kinds'])}" for p in proof_json["places"]]


def every_trace_everywhere(sessions, home, slack) -> Proof:
    """The proof run from the test's own knowledge: every planted text, the expired and the edited-away ones too."""
    traces = traces_of(PLANTED, kept_texts=[], departments=[d[0] for d in DEPARTMENTS], home=home)
    assert {t.kind for t in traces} >= {"e-mail", "phone number", "card number", "IBAN", "word"}
    with sessions() as session:
        proof = prove(session, home=home, traces=traces)
    search_values(proof, "the loopback Slack's bot posts", bot_posts(slack), Matcher(traces))
    return proof


def planted(sessions, start_bot, home):
    """Messages of every kind the product stores, then one past retention: the bot, still running."""
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="1")
    route(bot, ROUTED, ts="1700001000.000100")
    route(bot, RELABELLED, ts="1700001000.000200")
    assert bot.event(reaction("reaction_added", "moneybag", user=AGENT, ts="1700001000.000200")).status == 200
    wait_until(lambda: labelled(sessions, "1700001000.000200"), what="the relabel")
    route(bot, AUDITED, ts="1700001000.000300")
    reply_ts = stored_message(sessions, "1700001000.000300").reply_ts
    assert bot.action("audit_right", user=AGENT, ts=reply_ts).status == 200
    wait_until(lambda: labelled(sessions, "1700001000.000300"), what="the audit's answer")
    bot.drain()
    route(bot, BEFORE_EDIT, ts="1700001000.000400")
    assert bot.event(edit(AFTER_EDIT, "1700001000.000400")).status == 200
    bot.drain()
    wait_until(lambda: any("quixotic" in json.dumps(m) for m in bot_posts(bot.slack)), what="the edit's forward")
    route(bot, EXPIRED, ts="1700001000.000500")
    with transaction(sessions) as session:
        query = session.get(Query, stored_message(sessions, "1700001000.000500").query_id)
        query.received_at = datetime.now(UTC) - timedelta(days=40)
        session.add(query)
    assert expire_old_texts(sessions, 30) == 1
    assert bot.event(message(OTHERS, ts="1700001000.000600", user="UOTHER")).status == 200
    bot.drain()
    wait_until(lambda: any("axolotl" in json.dumps(m) for m in bot_posts(bot.slack)), what="the other's forward")
    proof = every_trace_everywhere(sessions, home, bot.slack)
    assert proof.found, "the planted texts are found before forgetting"
    return bot


def test_forget_verify_finds_nothing_left_of_a_customer_or_a_message(home, database_url, sessions, start_bot, store):
    bot = planted(sessions, start_bot, home)
    env = {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-test",
           "SLACK_API_URL": bot.slack.base_url}

    done = run_cli("forget", "--user", "UCUSTOMER", "--verify", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    proof = json.loads(done.stdout)["erasure_proof"]
    assert places(proof) == [] and proof["not_searched"] == []
    database = "the SQLite file and its WAL, as bytes" if store == "sqlite" else "PostgreSQL's dump (pg_dump)"
    assert database in proof["searched"] and "the bot's posts in Slack" in proof["searched"]

    link = "https://example.slack.com/archives/CSUPPORT/p1700001000000600"
    done = run_cli("forget", "--message", link, "--verify", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 places hold it" in done.stdout

    left = every_trace_everywhere(sessions, home, bot.slack)
    assert left.found == {}, left.text()
    with sessions() as session:
        assert list(session.exec(select(Query))) == []


def test_the_proof_names_each_place_and_kind_without_the_text(home, database_url, sessions, start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, ROUTED, ts="1700001100.000100")
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "logs" / "bot.log").write_bytes(b"\x00binary\x00 ANN.QUOKKA@example.org zanzibarian")
    env = {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url}  # no Slack token: Slack is not searched

    done = run_cli("forget", "--user", "UCUSTOMER", "--verify", "--json", env=env)
    assert done.returncode == 1, done.stderr
    proof = json.loads(done.stdout)["erasure_proof"]
    assert places(proof) == ["file logs/bot.log: e-mail, word"]
    assert proof["not_searched"] == ["Slack: no SLACK_BOT_TOKEN to read the channels with"]
    assert "quokka" not in done.stdout and "zanzibarian" not in done.stdout
    text = run_cli("forget", "--user", "UCUSTOMER", "--verify", env=env)
    assert text.returncode == 0 and "0 places hold it" in text.stdout  # nothing of theirs is left to look for
    assert "not searched: nothing" in text.stdout


def test_every_sqlite_connection_zeroes_deleted_rows_whatever_the_builds_default(tmp_path):
    """Some SQLite builds leave a deleted row's bytes in the file's free space (secure_delete off by default):
    store/db.py turns it on for every connection."""
    raw = sqlite3.connect(tmp_path / "x.db")
    raw.execute("PRAGMA secure_delete=OFF")  # as a build without SQLITE_SECURE_DELETE starts
    configure_sqlite_connection(raw, None)
    raw.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, t TEXT)")
    raw.executemany("INSERT INTO q (t) VALUES (?)", [(f"zanzibarian quokka {i}",) for i in range(3)])
    raw.commit()
    raw.execute("DELETE FROM q WHERE id = 2")
    raw.commit()
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    assert (tmp_path / "x.db").read_bytes().count(b"zanzibarian") == 2


def test_a_models_snapshot_naming_a_forgotten_text_no_longer_names_it(home, database_url, sessions,
                                                                              start_bot):
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, ROUTED, ts="1700001200.000100")
    adapter = home / "adapters" / "7"
    adapter.mkdir(parents=True)
    query_id = stored_message(sessions, "1700001200.000100").query_id
    (adapter / "snapshot.json").write_text(json.dumps({"train": [[query_id, "Billing"]], "holdout": []}))
    with transaction(sessions) as session:
        register_model(session, adapter_path=str(adapter), base_model="b", labels=["Billing"], hyperparameters={},
                       metrics={}, parent_id=None)
    env = {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url}
    done = run_cli("forget", "--user", "UCUSTOMER", "--verify", "--json", env=env)
    assert json.loads(done.stdout)["erasure_proof"]["places"] == [], done.stdout


def test_a_bank_or_snapshot_left_outside_the_registry_is_found_by_the_forgotten_ids(home, sessions):
    """A folder the registry does not name (copied aside, left by hand) is not rewritten by forget: the proof
    finds its rows by the forgotten texts' ids, which the bytes cannot show."""
    import numpy as np
    from safetensors.numpy import save_file

    aside = home / "adapters" / "copied-aside"
    aside.mkdir(parents=True)
    save_file({"hidden": np.zeros((2, 4), dtype=np.float16), "query_ids": np.array([3, 41], dtype=np.int64)},
              str(aside / "scope_bank.safetensors"))
    (aside / "snapshot.json").write_text(json.dumps({"train": [[41, "Billing"]], "holdout": []}))
    with sessions() as session:
        assert prove(session, home=home, traces=[], query_ids=[40]).found == {}
        found = prove(session, home=home, traces=[], query_ids=[41]).found
    assert found == {"file adapters/copied-aside/scope_bank.safetensors": {"forgotten text's id"},
                     "file adapters/copied-aside/snapshot.json": {"forgotten text's id"}}


def test_a_trained_models_files_keep_nothing_of_a_forgotten_customer(settings, home, database_url, sessions,
                                                                     start_bot, tiny_model_dir):
    """A real adapter trained on the customer's labelled message (weights, bank, snapshot, calibration) under
    SWITCHBOARD_HOME: after forget --user, the proof finds neither their words nor their text's id anywhere."""
    seed(sessions)
    bot = start_bot(SWITCHBOARD_AUDIT_RATE="0")
    route(bot, ROUTED, ts="1700001300.000100")
    assert bot.event(reaction("reaction_added", "package", user=AGENT, ts="1700001300.000100")).status == 200
    wait_until(lambda: labelled(sessions, "1700001300.000100"), what="the agent's label")
    run_training(trainer_deps(settings, sessions), RunOptions(config=FAST, progress=False,
                                                               alternatives=AlternativeSet.NONE))
    query_id = stored_message(sessions, "1700001300.000100").query_id
    with sessions() as session:
        before = prove(session, home=home, traces=[], query_ids=[query_id]).found
    assert any(place.endswith("snapshot.json") for place in before), before  # the model was trained on it

    env = {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url, "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir),
           "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": bot.slack.base_url}
    done = run_cli("forget", "--user", "UCUSTOMER", "--verify", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["trained_models"] and places(outcome["erasure_proof"]) == []
