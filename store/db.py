"""Engine and session factory. SQLite gets WAL and a busy timeout so the bot and the trainer can share it."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, create_engine

SessionFactory = Callable[[], Session]
BUSY_TIMEOUT_MS = 30_000


def configure_sqlite_connection(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")  # a deleted row's bytes are zeroed, not left in free pages
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Turn on WAL, retrying while another connection holds the lock.

    On a new file, connections that switch the journal mode at the same moment can deadlock on
    the lock upgrade; SQLite then answers "database is locked" at once instead of calling the busy
    handler, so the wait has to be done here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def make_engine(url: str) -> Engine:
    """`hide_parameters`: a failed statement's error (kept in `slack_events.last_error`, written to the logs)
    names the statement, never its values, which are customers' texts."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                           hide_parameters=True)
    event.listen(engine, "connect", configure_sqlite_connection)
    return engine


def session_factory(engine: Engine) -> SessionFactory:
    def new_session() -> Session:
        return Session(engine, expire_on_commit=False)

    return new_session


@contextmanager
def transaction(sessions: SessionFactory) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises."""
    with sessions() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


T = TypeVar("T")


def retrying(work: Callable[[], T], *, attempts: int = 3, pause_s: float = 0.2) -> T:
    """`work()`, tried again (after `pause_s`, then twice that) when the database fails in a way that
    may pass: a lost connection, a full disk, a lock. Integrity errors are answers, not failures."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or attempt == attempts:
                raise
            time.sleep(pause_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")
