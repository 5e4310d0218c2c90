"""Users: Discord members, found by their Discord id, and local command-line users, by name."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from storage.models import USER_NAME_LENGTH, User
from storage.timestamps import utcnow

log = logging.getLogger(__name__)


def get_or_create_user(session: Session, *, discord_id: int | None, name: str) -> User:
    """The user with ``discord_id`` (its name refreshed), or, for ``None``, the local user ``name``."""
    name = name[:USER_NAME_LENGTH]
    match = _match(discord_id=discord_id, name=name)
    user = session.scalars(select(User).where(match).order_by(User.id).limit(1)).first()
    if user is not None:
        if user.name != name:
            user.name = name
        return user
    user = User(discord_id=discord_id, name=name, created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        # The same member was added by another transaction in the meantime.
        return session.scalars(select(User).where(match)).one()
    log.info("new user %s (discord id %s)", name, discord_id)
    return user


def find_user(session: Session, *, discord_id: int) -> User | None:
    """The user of a Discord member, if nanke has met them."""
    return session.scalars(select(User).where(User.discord_id == discord_id).limit(1)).first()


def _match(*, discord_id: int | None, name: str) -> ColumnElement[bool]:
    if discord_id is None:
        return (User.discord_id.is_(None)) & (User.name == name)
    return User.discord_id == discord_id
