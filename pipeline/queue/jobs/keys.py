"""Keys of the HTTP API: each one a user of the fair queue, its secret stored only as a hash.

A secret is ``nk_`` and 43 URL-safe characters (256 random bits): too long to guess, so one
SHA-256 is a safe way to store it (as GitHub and PyPI store their tokens) and lets a request's
key be found by an index lookup instead of a scan.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from pipeline.errors import ApiKeyError
from pipeline.queue.jobs.snapshots import Requester, Viewer
from pipeline.queue.jobs.store import JobStore
from storage import (
    ApiKey,
    ApiKeyExists,
    api_key_by_secret,
    api_keys,
    create_api_key,
    revoke_api_key,
    set_api_key_model,
    touch_api_key,
)

log = logging.getLogger(__name__)

SECRET_PREFIX = "nk_"
SHOWN_PREFIX = 10
"""How much of a secret a listing shows (``nk_`` and 7 characters)."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ApiKeySnapshot:
    """A key as the API and the command line see it (never its secret)."""

    id: int
    name: str
    prefix: str
    user_id: int
    guild_id: int | None
    adult: bool
    model: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def requester(self) -> Requester:
        """Who the key's jobs belong to, and by whose rules they are judged."""
        return Requester(
            name=f"api:{self.name}", user_id=self.user_id, guild_id=self.guild_id, age_restricted=self.adult
        )

    @property
    def viewer(self) -> Viewer:
        """What the key may see: its own jobs, and its guild's public ones."""
        return Viewer(discord_id=None, guild_id=self.guild_id, user_id=self.user_id)

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeySnapshot:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            user_id=key.user_id,
            guild_id=key.guild_id,
            adult=key.adult,
            model=key.model,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


def secret_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiKeys:
    """Creating, finding, listing and revoking keys."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def create(
        self, name: str, *, guild_id: int | None = None, adult: bool = False
    ) -> tuple[ApiKeySnapshot, str]:
        """A new key and its secret (shown to the admin once; only its hash is kept)."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ApiKeyError(
                f"name: {name!r} is not allowed (allowed: 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit)"
            )
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        with self._store.session() as session:
            try:
                key = create_api_key(
                    session,
                    name=name,
                    secret_sha256=secret_sha256(secret),
                    prefix=secret[:SHOWN_PREFIX],
                    guild_id=guild_id,
                    adult=adult,
                )
            except ApiKeyExists as error:
                raise ApiKeyError(f"name: {name!r} is taken ({error})") from None
            snapshot = ApiKeySnapshot.of(key)
        log.info("API key %s created (guild %s)", name, guild_id)
        return snapshot, secret

    def authenticate(self, secret: str) -> ApiKeySnapshot | None:
        """The key with this secret, unless it does not exist or was revoked."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
            return None
        with self._store.session() as session:
            key = api_key_by_secret(session, secret_sha256=secret_sha256(secret))
            if key is None:
                return None
            touch_api_key(session, key_id=key.id)
            return ApiKeySnapshot.of(key)

    def list(self) -> list[ApiKeySnapshot]:
        with self._store.session() as session:
            return [ApiKeySnapshot.of(key) for key in api_keys(session)]

    def revoke(self, name: str) -> bool:
        """Revoke the key ``name`` (its requests are refused from now on); ``False`` if none is active."""
        with self._store.session() as session:
            revoked = revoke_api_key(session, name=name)
        if revoked:
            log.info("API key %s revoked", name)
        return revoked

    def set_model(self, key_id: int, model: str | None) -> None:
        """The model the key's requests use when they name none (``None``: the server's default)."""
        with self._store.session() as session:
            set_api_key_model(session, key_id=key_id, model=model)
