"""The database: an engine, sessions that commit or roll back, and the schema's migrations."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from storage.engine import is_sqlite, make_engine, sqlite_file
from storage.migrate import check_revision, revision_of, upgrade_to_head

log = logging.getLogger(__name__)


class Database:
    """One database URL (SQLite by default, PostgreSQL works the same). Thread-safe.

    Open one session per unit of work with :meth:`session`; objects stay readable after it
    closes (``expire_on_commit=False``) but are detached: read what you need inside it.
    """

    def __init__(self, url: str | URL, **engine_options: Any) -> None:
        self.url = make_url(url)
        self.engine = make_engine(self.url, **engine_options)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def in_memory(self) -> bool:
        return is_sqlite(self.url) and sqlite_file(self.url) is None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends, and rolls back if it raises."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def upgrade(self) -> str | None:
        """Migrate the schema to the newest revision (the app does this at start); returns it."""
        return upgrade_to_head(self.url, engine=self.engine if self.in_memory else None)

    def current_revision(self) -> str | None:
        """The schema's revision, ``None`` for an empty database."""
        with self.engine.connect() as connection:
            return revision_of(connection)

    def check_migrated(self) -> None:
        """Raise :class:`~storage.errors.DatabaseNotMigrated` unless the schema is the code's."""
        with self.engine.connect() as connection:
            check_revision(connection)

    def dispose(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"
