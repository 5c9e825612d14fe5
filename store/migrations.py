"""An ordered list of migrations, applied by the CLI before anything else touches the database.

Each migration runs once, in order, inside one transaction with its row in `schema_version`.
Append new ones to `MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

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


MIGRATIONS: list[Callable[[Connection], None]] = [
    _m001_initial, _m002_baseline_predictions, _m003_slack, _m004_trustworthy_holdout, _m005_out_of_scope]


def current_version(engine: Engine) -> int:
    if not inspect(engine).has_table("schema_version"):
        return 0
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COALESCE(MAX(version), 0) FROM schema_version")).scalar_one())


def migrate(engine: Engine) -> list[int]:
    """Apply every migration not yet applied; returns the versions applied now."""
    tables.SchemaVersion.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined]
    applied = []
    for version, migration in enumerate(MIGRATIONS, start=1):
        with engine.begin() as conn:
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
