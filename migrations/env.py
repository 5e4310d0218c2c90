"""Alembic's environment: migrates a database to match the ``storage`` models.

Run from code by ``storage.migrate`` (on a connection passed in ``config.attributes``), or from
the command line: ``alembic -c migrations/alembic.ini -x url=sqlite:///data/nanke.db upgrade head``.
"""

from __future__ import annotations

import logging
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from storage import models
from storage.engine import make_engine
from storage.migrate import check_foreign_keys, include_object
from storage.timestamps import UTCDateTime

log = logging.getLogger(__name__)

config = context.config
target_metadata = models.Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Write the app's column types as plain SQLAlchemy ones: a migration must not import the app."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def options(connection: Connection | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "target_metadata": target_metadata,
        "render_as_batch": True,
        "compare_type": True,
        "render_item": render_item,
        # The prompt search index (job_search*, migration 0003) has no model: never compare or drop it.
        "include_object": include_object,
    }
    if connection is not None and connection.dialect.name == "sqlite":
        # storage.engine makes SQLite emit BEGIN, so the whole upgrade is one transaction.
        found["transactional_ddl"] = True
    return found


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, **options(connection))
    with context.begin_transaction():
        context.run_migrations()
        check_foreign_keys(connection)


def run_offline() -> None:
    context.configure(
        url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"}, **options(None)
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = make_engine(database_url(), foreign_keys=False, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            run_on(connection)
    finally:
        engine.dispose()


if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
