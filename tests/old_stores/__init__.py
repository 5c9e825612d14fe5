"""Stores as the code of each schema version created them, for upgrade tests (see README.md here).

    load_old_store("sqlite:///tmp/x.db", 6)                       # a store at version 6, old code's schema
    migrate(make_engine("sqlite:///tmp/x.db"))                     # today's migrations upgrade it

`url` is a SQLAlchemy URL (`sqlite:///path` or `postgresql+psycopg://...`) of an empty database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
VERSIONS: list[int] = sorted(
    int(path.name[1:].split(".")[0]) for path in HERE.glob("v*.sqlite.sql")
    if (HERE / path.name.replace(".sqlite.", ".postgres.")).exists())


def dump_path(version: int, dialect: str) -> Path:
    """The dump of `version` for "sqlite" or "postgresql"."""
    if version not in VERSIONS:
        raise ValueError(f"no old store at version {version}; have {VERSIONS}")
    return HERE / f"v{version}.{'postgres' if dialect == 'postgresql' else dialect}.sql"


def load_old_store(url: str, version: int) -> None:
    """Creates, in the empty database at `url`, the store that version `version`'s code created."""
    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    if dialect == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("load_old_store needs a SQLite file, not an in-memory database")
        sql = dump_path(version, "sqlite").read_text()
        db = sqlite3.connect(parsed.database)
        try:
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise ValueError(f"{parsed.database} is not empty")
            db.executescript(sql)  # the dump brackets itself in BEGIN TRANSACTION ... COMMIT
        finally:
            db.close()
    elif dialect == "postgresql":
        import psycopg

        sql = dump_path(version, "postgresql").read_text()
        libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(libpq) as conn:  # one transaction: commits on success, rolls back on error
            if conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]:
                raise ValueError(f"{parsed.render_as_string()} is not empty")
            conn.execute(sql)  # type: ignore[arg-type]  # many statements, no parameters: one simple query
    else:
        raise ValueError(f"no old stores for {dialect}")
