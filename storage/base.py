"""The declarative base and the metadata every table and migration shares."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.schema import CreateColumn

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Every constraint has a predictable name, so migrations can drop and alter them (SQLite too)."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


@compiles(CreateColumn, "sqlite")
def _named_autoincrement_key(element: CreateColumn, compiler: Any, **kw: Any) -> str:
    """Keep the primary key's conventional name on a SQLite ``AUTOINCREMENT`` column.

    SQLite allows AUTOINCREMENT only in the column's own ``PRIMARY KEY`` clause, which
    SQLAlchemy renders without the constraint's name; the name goes in front of it here.
    """
    text: str = compiler.visit_create_column(element, **kw)
    if text is not None and text.rstrip().endswith(" PRIMARY KEY AUTOINCREMENT"):
        name = compiler.preparer.format_constraint(element.element.table.primary_key)
        if name:
            text = text.replace(" PRIMARY KEY", f" CONSTRAINT {name} PRIMARY KEY", 1)
    return text
