"""Rows added once, found by their primary key, whoever else adds the same row at the same time.

On SQLite a transaction that reads and then writes holds the write lock from its start, so two
cannot both find a row missing. PostgreSQL runs them side by side: both find it missing and both
insert it; the second insert waits for the first transaction and then violates the primary key.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

Row = TypeVar("Row")


def get_or_add(session: Session, row: Row) -> tuple[Row, bool]:
    """The stored row with ``row``'s primary key, else ``row`` itself, added now; and whether it was.

    The insert runs in a savepoint: when another transaction added the same row meanwhile, only
    the savepoint rolls back, and that transaction's row (committed by then) is returned.
    """
    model = type(row)
    key = tuple(inspect(model).primary_key_from_instance(row))
    found = session.get(model, key)
    if found is not None:
        return found, False
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        found = session.get(model, key)
        if found is None:
            raise
        log.debug("%s %r was added by another transaction meanwhile", model.__name__, key)
        return found, False
    return row, True
