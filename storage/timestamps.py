"""Timezone-aware UTC datetimes in and out of the database, whatever the database keeps."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

NATIVE_TIMEZONE_DIALECTS = frozenset({"postgresql"})
"""Dialects whose ``DateTime(timezone=True)`` keeps the offset; the others store naive UTC."""


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime`` that accepts only aware datetimes and always returns aware UTC ones.

    SQLite has no time zones: values are converted to UTC and stored naive, and read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give it a time zone (UTC)")
        value = value.astimezone(timezone.utc)
        return value if dialect.name in NATIVE_TIMEZONE_DIALECTS else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
