"""Engines for a database URL, with SQLite set up for a small multi-threaded server (and a
server database's pooled connections checked before use).

SQLite connections get foreign keys, write-ahead logging and a busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE``: a transaction that reads a row and then changes it
holds the write lock from its start, so two threads cannot both move the same job, and a writer
waits for another (up to the busy timeout) instead of failing. Transactions are short here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 15_000


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL, ``None`` for an in-memory database or another backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


def make_engine(url: str | URL, *, foreign_keys: bool = True, **options: Any) -> Engine:
    """An engine for ``url``; for a SQLite file, its folder is created first.

    ``foreign_keys=False`` is for migrations only: SQLite rebuilds a table to alter it, and
    dropping the old table with foreign keys on would cascade into the rows that refer to it.
    """
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not is_sqlite(url):
        # A database server ends connections the pool still holds (a restart, an idle timeout, a
        # failover): each is checked as it is taken, so a unit of work does not fail on a dead one.
        options.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, foreign_keys=foreign_keys)
    return engine


def _configure_sqlite(engine: Engine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below); the driver's own half-transactions are turned off.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
