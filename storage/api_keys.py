"""Keys of the HTTP API: created, found by the hash of their secret, listed, revoked."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.errors import ApiKeyExists, StorageError
from storage.models import ApiKey, User
from storage.timestamps import utcnow

log = logging.getLogger(__name__)

TOUCH_EVERY = timedelta(minutes=1)


def create_api_key(
    session: Session,
    *,
    name: str,
    secret_sha256: str,
    prefix: str,
    guild_id: int | None = None,
    adult: bool = False,
) -> ApiKey:
    """Add a key and the user it acts as (named ``api:<name>``)."""
    if session.scalars(select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
        raise ApiKeyExists(f"an API key named {name!r} exists already")
    user = User(discord_id=None, name=f"api:{name}", created_at=utcnow())
    session.add(user)
    session.flush()
    key = ApiKey(
        name=name,
        secret_sha256=secret_sha256,
        prefix=prefix,
        user_id=user.id,
        guild_id=guild_id,
        adult=adult,
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    return key


def api_key_by_secret(session: Session, *, secret_sha256: str) -> ApiKey | None:
    """The key whose secret hashes to ``secret_sha256``, unless it was revoked."""
    key = session.scalars(select(ApiKey).where(ApiKey.secret_sha256 == secret_sha256)).first()
    return key if key is not None and key.revoked_at is None else None


def api_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_api_key(session: Session, *, name: str) -> bool:
    """Revoke the key ``name``; ``False`` if there is none, or it was revoked already."""
    key = session.scalars(select(ApiKey).where(ApiKey.name == name)).first()
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    session.flush()
    return True


def set_api_key_model(session: Session, *, key_id: int, model: str | None) -> None:
    """The model the key's requests use when they name none (``None``: the server's default)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise StorageError(f"no API key with id {key_id}")
    key.model = model
    session.flush()


def touch_api_key(session: Session, *, key_id: int) -> None:
    """Remember when the key was last used (to the minute: a busy key does not write every request)."""
    key = session.get(ApiKey, key_id)
    now = utcnow()
    if key is not None and (key.last_used_at is None or now - key.last_used_at > TOUCH_EVERY):
        key.last_used_at = now
