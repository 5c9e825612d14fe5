"""The store's one timestamp type: aware UTC in, aware UTC out, on SQLite and PostgreSQL alike.

Owned here rather than left to SQLModel's mapping of `datetime`, which changed between releases
(naive `DateTime` up to 0.0.2x, an aware type later): the store's comparisons of lease and retry
times must not depend on which release is installed. On PostgreSQL the column is `timestamptz`;
SQLite keeps the UTC wall time, and a naive value read back is UTC by construction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import types
from sqlalchemy.engine.interfaces import Dialect


class UTCDateTime(types.TypeDecorator[datetime]):
    impl = types.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("the store keeps aware datetimes only: use store.tables.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
