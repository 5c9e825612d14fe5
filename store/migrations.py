"""An ordered list of migrations, applied by the CLI before anything else touches the database.

Each migration runs once, in order, inside one exclusive transaction with its row in `schema_version`.
Append new ones to `MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

from store import tables


def _m001_initial(conn: Connection) -> None:
    initial = [
        tables.Department, tables.Query, tables.Label, tables.ModelVersion, tables.Registry,
        tables.Prediction, tables.TrainingRun, tables.Lock,
    ]
    tables.SQLModel.metadata.create_all(conn, tables=[t.__table__ for t in initial])  # type: ignore[attr-defined]
    conn.execute(text("INSERT INTO registry (id, changed_at) VALUES (1, CURRENT_TIMESTAMP)"))


def _m002_baseline_predictions(conn: Connection) -> None:
    tables.BaselinePrediction.__table__.create(conn)  # type: ignore[attr-defined]


def _m003_slack(conn: Connection) -> None:
    tables.SlackMessage.__table__.create(conn)  # type: ignore[attr-defined]
    tables.SlackEvent.__table__.create(conn)  # type: ignore[attr-defined]


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    """Adds the columns a table lacks: earlier migrations create tables from today's models, so a new
    store already has them."""
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, kind in columns.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


def _m004_trustworthy_holdout(conn: Connection) -> None:
    """Audits, baseline routing and distillation, fixed baseline shots; corrections leave the holdout.

    A text whose first label was an agent's correction or confirmation was chosen by the model's
    errors (or the agent's eye), so it moves from the holdout to training. Nothing ever moves the
    other way.
    """
    if conn.dialect.name == "postgresql":
        for name in ("AUDIT", "BASELINE"):
            conn.execute(text(f"ALTER TYPE labelsource ADD VALUE IF NOT EXISTS '{name}'"))
    _add_columns(conn, "slack_messages", {"audit_requested": "BOOLEAN NOT NULL DEFAULT FALSE"})
    _add_columns(conn, "predictions", {"baseline_model": "VARCHAR", "prompt_tokens": "INTEGER",
                                       "completion_tokens": "INTEGER", "cost_usd": "FLOAT"})
    tables.BaselineShot.__table__.create(conn)  # type: ignore[attr-defined]
    conn.execute(text(
        "UPDATE queries SET split = 'TRAIN' WHERE split = 'HOLDOUT' AND id IN ("
        " SELECT l.query_id FROM labels l WHERE l.source IN ('AGENT', 'CONFIRM') AND l.id = ("
        "  SELECT MIN(first.id) FROM labels first WHERE first.query_id = l.query_id))"))


def _m005_out_of_scope(conn: Connection) -> None:
    """The reserved class for messages that belong to no department."""
    _add_columns(conn, "departments", {"out_of_scope": "BOOLEAN NOT NULL DEFAULT FALSE"})
    _add_columns(conn, "predictions", {"out_of_scope": "FLOAT"})


def _m006_early_removals(conn: Connection) -> None:
    """Reaction removals that arrived before their additions."""
    tables.EarlyRemoval.__table__.create(conn)  # type: ignore[attr-defined]


def _m007_outbox(conn: Connection) -> None:
    """Events whose handling failed after Slack's acknowledgement are kept and retried by the bot."""
    _add_columns(conn, "slack_events", {"payload": "JSON", "attempts": "INTEGER NOT NULL DEFAULT 0",
                                        "retry_at": "TIMESTAMP", "last_error": "VARCHAR",
                                        "gave_up_at": "TIMESTAMP"})


def _m008_training_requests(conn: Connection) -> None:
    """Admins' retrain requests, which the trainer service takes instead of the bot training."""
    tables.TrainingRequest.__table__.create(conn)  # type: ignore[attr-defined]


def _m009_alerts(conn: Connection) -> None:
    """Drift alarms, raised once per department and model."""
    tables.Alert.__table__.create(conn)  # type: ignore[attr-defined]


def _timestamp(conn: Connection) -> str:
    return "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "TIMESTAMP"


def _m010_durable_delivery(conn: Connection) -> None:
    """A message's path as durable steps: events held under a renewed lease by one owner, a ledger of
    posts made at most once, labels tied to the event that gave or withdrew them, at most one open
    retrain request, and aware timestamps everywhere on PostgreSQL.

    Claims left unfinished under the old scheme (no owner) become due two minutes after they were
    made, as before. Of retrain requests recorded twice by the old race, the oldest stays open and
    the others are closed as its duplicates.
    """
    _add_columns(conn, "slack_events", {"owner": "VARCHAR", "lease_until": _timestamp(conn),
                                        "handing_off": "BOOLEAN NOT NULL DEFAULT FALSE"})
    conn.execute(text(
        "UPDATE slack_events SET retry_at = claimed_at WHERE done_at IS NULL AND gave_up_at IS NULL"
        " AND retry_at IS NULL AND owner IS NULL"))
    tables.SlackPost.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
    _add_columns(conn, "labels", {"event_id": "VARCHAR", "withdrawn_event_id": "VARCHAR"})
    conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ix_labels_event_id ON labels (event_id)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_labels_withdrawn_event_id ON labels (withdrawn_event_id)"))
    _add_columns(conn, "training_requests", {"open_slot": "INTEGER"})
    open_ids = [row[0] for row in conn.execute(text(
        "SELECT id FROM training_requests WHERE finished_at IS NULL ORDER BY id"))]
    if open_ids:
        conn.execute(text("UPDATE training_requests SET open_slot = NULL WHERE finished_at IS NOT NULL"))
        conn.execute(text("UPDATE training_requests SET open_slot = 1 WHERE id = :id"), {"id": open_ids[0]})
        for duplicate in open_ids[1:]:
            conn.execute(text(
                "UPDATE training_requests SET finished_at = CURRENT_TIMESTAMP, open_slot = NULL, "
                "outcome = :outcome WHERE id = :id"),
                {"id": duplicate, "outcome": f"a duplicate of request {open_ids[0]}, recorded twice by a race"})
    conn.execute(text(
        "CREATE UNIQUE INDEX IF NOT EXISTS ix_training_requests_open_slot ON training_requests (open_slot)"))
    if conn.dialect.name == "postgresql":
        _aware_timestamps(conn)


def _aware_timestamps(conn: Connection) -> None:
    """Every `timestamp without time zone` column becomes `timestamptz`.

    Columns added by raw DDL (migration 7's `retry_at`) or created by a SQLModel release that
    mapped `datetime` to a naive type hold the wall time of the session that wrote them, which is
    the server's time zone unless a client changed it: that is the zone the values are read in.
    Compared with the aware values the store binds, a naive column is converted in the session's
    zone, so on a server outside UTC a compare-and-set on it never matched.
    """
    naive = conn.execute(text(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND data_type = 'timestamp without time zone'")).all()
    zone = str(conn.execute(text("SELECT current_setting('TimeZone')")).scalar_one()).replace("'", "''")
    for table, column in naive:  # DDL takes no bound parameters: the zone is quoted as a literal
        conn.execute(text(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE TIMESTAMP WITH TIME ZONE '
                          f"USING \"{column}\" AT TIME ZONE '{zone}'"))


def _m011_learning_from_everything(conn: Connection) -> None:
    """Implicit labels (routes no agent corrected) and agents' answers to the bot's questions."""
    if conn.dialect.name == "postgresql":
        for name in ("IMPLICIT", "ASKED"):
            conn.execute(text(f"ALTER TYPE labelsource ADD VALUE IF NOT EXISTS '{name}'"))
    _add_columns(conn, "slack_messages", {"ask_requested": "BOOLEAN NOT NULL DEFAULT FALSE"})


def _m012_customer_data(conn: Connection) -> None:
    """A content-free record of each customer's data forgotten on request; the store's salt for the hashes
    of texts deleted after the retention period."""
    import secrets

    tables.ForgetRecord.__table__.create(conn)  # type: ignore[attr-defined]
    tables.StoreSalt.__table__.create(conn)  # type: ignore[attr-defined]
    conn.execute(text("INSERT INTO store_salt (id, value) VALUES (1, :v)"), {"v": secrets.token_hex(32)})


def _m013_shadow(conn: Connection) -> None:
    """Candidates that score live messages in shadow, and candidates waiting for an admin's approval."""
    if conn.dialect.name == "postgresql":
        for kind in ("modelstatus", "runstatus"):
            for name in ("SHADOW", "AWAITING_APPROVAL"):
                conn.execute(text(f"ALTER TYPE {kind} ADD VALUE IF NOT EXISTS '{name}'"))
    tables.ShadowPrediction.__table__.create(conn)  # type: ignore[attr-defined]
    _add_columns(conn, "training_runs", {"approval_posted_at": _timestamp(conn)})


def _m014_two_audiences(conn: Connection) -> None:
    """The customer's reply and the agents' copies: a department's own customer reply, whether a message's
    author is of another organisation, and which message each post is about (found by its ts), so that
    a reaction or a button on a department's copy acts on the customer's message. Posts from before
    name their message in their key (`reply:C:ts`, `forward:C:ts`, `handoff:C:ts`, `reroute:…:id`)."""
    _add_columns(conn, "departments", {"customer_reply": "VARCHAR"})
    _add_columns(conn, "slack_messages", {"external": "BOOLEAN NOT NULL DEFAULT FALSE"})
    _add_columns(conn, "slack_posts", {"message_id": "INTEGER"})
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_slack_posts_ts ON slack_posts (ts)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_slack_posts_message_id ON slack_posts (message_id)"))
    for kind in ("reply", "forward", "handoff"):
        conn.execute(text(
            "UPDATE slack_posts SET message_id = (SELECT m.id FROM slack_messages m WHERE slack_posts.key = "
            f"'{kind}:' || m.channel || ':' || m.ts) WHERE message_id IS NULL AND key LIKE '{kind}:%'"))
    reroutes = conn.execute(text("SELECT key FROM slack_posts WHERE message_id IS NULL AND key LIKE 'reroute:%'"))
    for key, in list(reroutes):
        parts = key.split(":", 3)
        found = parts[2] if parts[1] == "audit" else parts[-1]
        if found.isdigit():
            conn.execute(text("UPDATE slack_posts SET message_id = :id WHERE key = :key AND EXISTS "
                              "(SELECT 1 FROM slack_messages WHERE id = :id)"), {"id": int(found), "key": key})


def _m015_expired_messages_user_hash(conn: Connection) -> None:
    """A message past retention keeps its author's id salted with the store's salt, so `forget --user` still
    finds it and the bot's posts about it (store/salted.py)."""
    _add_columns(conn, "slack_messages", {"user_hash": "VARCHAR"})
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_slack_messages_user_hash ON slack_messages (user_hash)"))


def _m016_slack_work(conn: Connection) -> None:
    """Slack deletions owed after forgetting, retried by the bot (store/slack_work.py), and which query texts each
    approval request quotes, so that forgetting a text deletes the request too."""
    tables.SlackWork.__table__.create(conn)  # type: ignore[attr-defined]
    tables.ApprovalQuote.__table__.create(conn)  # type: ignore[attr-defined]


def _m017_card_numbers_masked(conn: Connection) -> None:
    """Card numbers stored before the store masked them on the way in (PCI DSS forbids keeping them) are masked
    where they lie: queries' texts and stored events (store/card_numbers.py)."""
    from store.card_numbers import mask_stored_card_numbers

    mask_stored_card_numbers(conn)


MIGRATIONS: list[Callable[[Connection], None]] = [
    _m001_initial, _m002_baseline_predictions, _m003_slack, _m004_trustworthy_holdout, _m005_out_of_scope,
    _m006_early_removals, _m007_outbox, _m008_training_requests, _m009_alerts, _m010_durable_delivery,
    _m011_learning_from_everything, _m012_customer_data, _m013_shadow, _m014_two_audiences,
    _m015_expired_messages_user_hash, _m016_slack_work, _m017_card_numbers_masked]


def migrate(engine: Engine, steps: Sequence[Callable[[Connection], None]] = MIGRATIONS) -> list[int]:
    """Apply every migration not yet applied; returns the versions applied now. `steps` is for tests that
    stop a store at an older version, or make a migration fail.

    Each migration, its version row and the check that it is still needed share one exclusive
    transaction, DDL included: a crash leaves either all of it or none, and processes starting
    together on a new store take turns instead of failing (`_exclusive`).
    """
    applied = []
    for version, migration in enumerate(steps, start=1):
        with _exclusive(engine) as conn:
            tables.SchemaVersion.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
            done = conn.execute(text("SELECT 1 FROM schema_version WHERE version = :v"), {"v": version}).first()
            if done:
                continue
            migration(conn)
            conn.execute(
                text("INSERT INTO schema_version (version, applied_at) VALUES (:v, CURRENT_TIMESTAMP)"),
                {"v": version},
            )
        applied.append(version)
    return applied


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """One transaction that no other migrating process can interleave with, DDL inside it.

    SQLite: Python's driver commits before DDL unless it is told to leave transactions alone, so
    the transaction is begun by hand, IMMEDIATE (the write lock first, waiting out the busy
    timeout). PostgreSQL: DDL is transactional; an advisory lock makes the others wait.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            raw = conn.connection.dbapi_connection
            assert raw is not None
            saved = raw.isolation_level  # type: ignore[attr-defined]
            raw.isolation_level = None  # type: ignore[attr-defined]
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                raw.isolation_level = saved  # type: ignore[attr-defined]
            return
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(727277)"))
            yield conn
