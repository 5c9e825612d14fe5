"""`switchboard labels`: each label's trail (who, when, source, in force, superseded or withdrawn),
and `export` carrying the author and the time."""

from __future__ import annotations

import json

from sqlmodel import select

from store.db import transaction
from store.examples import add_examples, get_department, label_query
from store.label_history import label_history
from store.slack import withdraw_labels
from store.tables import LabelSource, Query
from tests.support import run_cli


def relabel(sessions, text: str, department: str, agent: str) -> None:
    with transaction(sessions) as session:
        query = session.exec(select(Query).where(Query.text == text)).one()
        label_query(session, query=query, department=get_department(session, name=department),
                    source=LabelSource.AGENT, author=agent)


def seed(sessions) -> None:
    with transaction(sessions) as session:
        add_examples(session, examples=[("my card was charged twice", "Billing"), ("where is my parcel", "Shipping")])
    relabel(sessions, "my card was charged twice", "Shipping", "UAGENT1")
    relabel(sessions, "my card was charged twice", "Billing", "UAGENT2")
    with transaction(sessions) as session:
        query = session.exec(select(Query).where(Query.text == "my card was charged twice")).one()
        withdraw_labels(session, query_id=query.id, author="UAGENT2", department_id=get_department(
            session, name="Billing").id, source=LabelSource.AGENT)


def test_a_messages_labels_read_back_newest_first_with_what_became_of_each(sessions):
    seed(sessions)
    with sessions() as session:
        trail = label_history(session, text="CHARGED")
    assert [(e.department, e.source, e.author, e.state) for e in trail] == [
        ("Billing", "agent", "UAGENT2", "withdrawn"),  # taken back: the agent's earlier Shipping stands again
        ("Shipping", "agent", "UAGENT1", "in force"),
        ("Billing", "import", None, "superseded"),
    ]
    assert trail[0].withdrawn_at is not None and trail[0].created_at >= trail[1].created_at
    with sessions() as session:
        assert [e.text for e in label_history(session, department="shipping")] == [
            "my card was charged twice", "where is my parcel"]
        assert label_history(session, text="nothing like this") == []


def test_labels_and_export_from_the_command_line(sessions, home, database_url):
    seed(sessions)
    env = {"SWITCHBOARD_HOME": str(home), "DATABASE_URL": database_url}
    listed = run_cli("labels", "--department", "Billing", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["labels"]
    assert [(r["author"], r["state"]) for r in rows] == [("UAGENT2", "withdrawn"), (None, "superseded")]
    text = run_cli("labels", "--text", "parcel", env=env).stdout
    assert "'Shipping'" in text and "in force" in text and "where is my parcel" in text

    exported = [json.loads(line) for line in run_cli("export", env=env).stdout.splitlines()]
    charged = next(row for row in exported if row["text"] == "my card was charged twice")
    assert charged["label"] == "Shipping" and charged["author"] == "UAGENT1" and charged["source"] == "agent"
    assert charged["created_at"].startswith("20")
