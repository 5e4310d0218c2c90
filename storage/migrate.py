"""Alembic, run from code: upgrade a database to the newest schema, or check that it is there.

The app upgrades at start (``python main.py db upgrade`` does the same by hand). The
``migrations`` folder is found next to this package, wherever it is installed; the ``alembic``
command line works too: ``alembic -c migrations/alembic.ini -x url=sqlite:///data/nanke.db ...``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

import migrations
from storage.engine import make_engine
from storage.errors import DatabaseNotMigrated, StorageError

log = logging.getLogger(__name__)

SEARCH_INDEX_PREFIX = "job_search"
"""The prompt search index (migration 0003) is named ``job_search*``: an FTS5 virtual table, its
shadow tables and triggers on SQLite, a GIN index on PostgreSQL. It has no model, so Alembic's
model-to-database comparison must skip it (:func:`include_object`)."""

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
MIGRATION_LOCK = int.from_bytes(b"nanke-db", "big") >> 1
"""The PostgreSQL advisory lock (a 64-bit key of nanke's own) a migration holds (:func:`_migrating`)."""


def alembic_config(url: str | URL, *, connection: Connection | None = None) -> Config:
    """An Alembic configuration for ``url``; with ``connection``, migrations run on that connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # The value goes through configparser interpolation: a literal % must be doubled.
    rendered = make_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def scripts() -> ScriptDirectory:
    return ScriptDirectory(MIGRATIONS_DIR)


def head_revision() -> str | None:
    """The newest revision the code knows."""
    return scripts().get_current_head()


def upgrade_to_head(url: str | URL, *, engine: Engine | None = None) -> str | None:
    """Upgrade the database at ``url`` to the newest schema, in one transaction; returns the revision.

    ``engine``: migrate through it rather than a fresh one (an in-memory database has no other).
    """
    with _migrating(url, engine) as connection:
        before = revision_of(connection)
        command.upgrade(alembic_config(url, connection=connection), "head")
        after = revision_of(connection)
    if before != after:
        log.info("database upgraded from %s to %s", before or "(empty)", after)
    return after


def downgrade_to(url: str | URL, revision: str, *, engine: Engine | None = None) -> str | None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"``: no tables); returns the revision."""
    with _migrating(url, engine) as connection:
        command.downgrade(alembic_config(url, connection=connection), revision)
        after = revision_of(connection)
    log.info("database downgraded to %s", after or "(empty)")
    return after


def current_revision(url: str | URL) -> str | None:
    """The revision the database at ``url`` is at, ``None`` for an empty database."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return revision_of(connection)
    finally:
        engine.dispose()


def check_revision(connection: Connection) -> None:
    """Raise :class:`DatabaseNotMigrated` unless the database behind ``connection`` is at head."""
    current = revision_of(connection)
    head = head_revision()
    if current != head:
        raise DatabaseNotMigrated(current, head, known=current is None or _is_known(current))


def _is_known(revision: str) -> bool:
    try:
        scripts().get_revision(revision)
    except CommandError:
        return False
    return True


def revision_of(connection: Connection) -> str | None:
    """The revision of the database behind ``connection``, ``None`` for an empty database."""
    heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:
        raise StorageError(f"The database has several migration heads: {', '.join(heads)}.")
    return heads[0] if heads else None


@contextmanager
def _migrating(url: str | URL, engine: Engine | None) -> Iterator[Connection]:
    """A connection in a transaction that no other migration runs beside; a fresh engine's has
    SQLite foreign keys off (see make_engine).

    Processes started together (the bot and the HTTP API) each upgrade the database at start. On
    SQLite the transaction's ``BEGIN IMMEDIATE`` makes the second wait for the first; PostgreSQL
    runs both at once unless they take the same advisory lock, held until the transaction ends:
    the second then finds the schema at head instead of failing to create it again.
    """
    own = engine is None
    if engine is None:
        engine = make_engine(url, foreign_keys=False, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            yield connection
    finally:
        if own:
            engine.dispose()


def check_foreign_keys(connection: Connection) -> None:
    """After a SQLite migration (run with foreign keys off): fail if a row points nowhere."""
    if connection.dialect.name != "sqlite":
        return
    problems = connection.execute(text("PRAGMA foreign_key_check")).all()
    if problems:
        first = tuple(problems[0])
        raise StorageError(f"The migration broke {len(problems)} foreign key(s), the first: {first}.")


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's ``include_object`` filter: leave out the search index, which no model describes.

    Used by ``migrations/env.py`` (so autogenerate never drops it) and by the schema test.
    """
    return not (name or "").startswith(SEARCH_INDEX_PREFIX)
