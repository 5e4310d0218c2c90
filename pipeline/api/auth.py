"""Who is calling the HTTP API: an API key, sent as ``Authorization: Bearer <key>`` or, the way the
WebUI's ``--api-auth`` clients send it, as HTTP Basic with the key's name and the key.

Every request without a valid key is refused with 401, before anything else is read; each key
may make ``NANKE_API_RATE`` requests a minute (a token bucket, so short bursts are fine), and
gets 429 with ``Retry-After`` beyond that.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from pipeline.queue.jobs import ApiKeySnapshot

log = logging.getLogger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Basic realm="nanke", charset="UTF-8"'}


def credentials(header: str | None) -> tuple[str | None, str] | None:
    """(the name given with Basic, or ``None`` for Bearer; the secret) from an Authorization header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return None, value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, colon, secret = decoded.partition(":")
        return (name, secret) if colon and secret else None
    return None


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` requests a minute for each key, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def admit(self, key_id: int) -> float:
        """Take one request from the key's bucket: 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        rate = self.per_minute / 60.0
        with self._lock:
            bucket = self._buckets.setdefault(key_id, _Bucket(float(self.per_minute), now))
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / rate


async def caller(request: Request) -> ApiKeySnapshot:
    """The key of the request (a FastAPI dependency): 401 without a valid one, 429 over its rate."""
    context = request.app.state.nanke
    given = credentials(request.headers.get("authorization"))
    key = await context.jobs.keys.authenticate(given[1]) if given is not None else None
    if key is None or (given is not None and given[0] not in (None, key.name)):
        raise HTTPException(
            401, "an API key is needed (create one with: python main.py api-key create NAME)", CHALLENGE
        )
    wait = context.limiter.admit(key.id)
    if wait:
        raise HTTPException(
            429,
            f"too many requests for the key {key.name!r} (at most {context.limiter.per_minute} a minute)",
            {"Retry-After": str(math.ceil(wait))},
        )
    return key


Key = Annotated[ApiKeySnapshot, Depends(caller)]
"""A route's parameter for the calling key: ``async def route(key: Key)``."""
