"""What the gate's holdout is made of: labels no model's errors selected, and a migration that makes old stores so."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import select

from store.db import make_engine, session_factory, transaction
from store.examples import add_examples, corrected_misroutes, get_department, label_query, upsert_department
from store.slack import query_for_text
from store.tables import Label, LabelSource, Prediction, Query, Split
from trainer.snapshot import take_snapshot

DEPARTMENTS = ["Billing", "Orders", "Shipping"]


def label_new_texts(sessions, source, count=60, prefix="text"):
    """`count` new routed texts, each first labelled by `source`; returns their splits."""
    splits = []
    with transaction(sessions) as session:
        for name in DEPARTMENTS:
            upsert_department(session, name=name)
        for i in range(count):
            query = query_for_text(session, text=f"{prefix} {source} {i}", channel="C1", ts=f"{i}.1", user="U",
                                   event_id=None)
            department = get_department(session, name=DEPARTMENTS[i % 3])
            label_query(session, query=query, department=department, source=source, author="U1")
            splits.append(query.split)
    return splits


def test_corrections_confirmations_and_distilled_labels_only_ever_train(sessions):
    for source in (LabelSource.AGENT, LabelSource.CONFIRM, LabelSource.BASELINE):
        assert set(label_new_texts(sessions, source)) == {Split.TRAIN}


def test_audits_and_history_reach_the_holdout_at_their_shares(sessions):
    audits = label_new_texts(sessions, LabelSource.AUDIT, count=120)
    admin = label_new_texts(sessions, LabelSource.ADMIN, count=120)
    assert 0.45 <= audits.count(Split.HOLDOUT) / len(audits) <= 0.55
    assert 0.15 <= admin.count(Split.HOLDOUT) / len(admin) <= 0.25


def test_a_flood_of_corrections_does_not_pull_audits_into_the_holdout(sessions):
    label_new_texts(sessions, LabelSource.AGENT, count=300)
    audits = label_new_texts(sessions, LabelSource.AUDIT, count=60)
    assert audits.count(Split.HOLDOUT) / len(audits) <= 0.55


def test_a_later_label_never_moves_a_text_between_splits(sessions):
    label_new_texts(sessions, LabelSource.AGENT, count=30)
    with transaction(sessions) as session:
        for query in session.exec(select(Query)).all():
            label_query(session, query=query, department=get_department(session, name="Billing"),
                        source=LabelSource.AUDIT, author="U2")
    with sessions() as session:
        assert {q.split for q in session.exec(select(Query))} == {Split.TRAIN}
        assert take_snapshot(session).holdout == []


def test_the_known_mistakes_are_the_corrected_misroutes(sessions):
    with transaction(sessions) as session:
        for name in DEPARTMENTS:
            upsert_department(session, name=name)
        for i, (routed, corrected) in enumerate([("Billing", "Orders"), ("Orders", "Orders"), ("Shipping", None)]):
            query = query_for_text(session, text=f"message {i}", channel="C1", ts=f"{i}.1", user="U", event_id=None)
            session.add(Prediction(query_id=query.id, department=routed, confidence=0.9, scores={}, latency_ms=1))
            if corrected:
                label_query(session, query=query, department=get_department(session, name=corrected),
                            source=LabelSource.AGENT, author="U1")
    with sessions() as session:
        mistakes = corrected_misroutes(session)
        assert [(e.text, e.label) for e in mistakes] == [("message 0", "Orders")]
        assert take_snapshot(session).known_mistakes == mistakes


def test_the_migration_moves_corrections_out_of_an_old_holdout_and_nothing_in(tmp_path):
    from store import migrations

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrations.migrate(engine, migrations.MIGRATIONS[:3])
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        add_examples(session, examples=[(f"history {i}", DEPARTMENTS[i % 3]) for i in range(30)])
    with engine.begin() as conn:  # what the old code did: a correction's text split by hash, often holdout
        conn.execute(text("ALTER TABLE slack_messages DROP COLUMN audit_requested"))
        for i in range(10):
            conn.execute(text("INSERT INTO queries (text, text_hash, split, received_at) "
                              "VALUES (:t, :h, :s, CURRENT_TIMESTAMP)"),
                         {"t": f"corrected {i}", "h": f"hash{i}", "s": "HOLDOUT" if i < 6 else "TRAIN"})
            conn.execute(text("INSERT INTO labels (query_id, department_id, source, created_at) VALUES "
                              "((SELECT id FROM queries WHERE text_hash = :h), 1, :src, CURRENT_TIMESTAMP)"),
                         {"h": f"hash{i}", "src": "CONFIRM" if i % 2 else "AGENT"})
    with sessions() as session:
        before = {q.text: q.split for q in session.exec(select(Query))}
    assert migrations.migrate(engine) == list(range(4, len(migrations.MIGRATIONS) + 1))
    with sessions() as session:
        after = {q.text: q.split for q in session.exec(select(Query))}
        assert session.exec(select(Label)).all()  # nothing lost
    assert all(after[f"corrected {i}"] == Split.TRAIN for i in range(10))
    assert {t: s for t, s in after.items() if t.startswith("history")} == \
        {t: s for t, s in before.items() if t.startswith("history")}
    assert not [t for t in after if before[t] == Split.TRAIN and after[t] == Split.HOLDOUT]
