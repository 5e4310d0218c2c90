"""REST faults the double injects: queued ones (``fail_next``, ``drop_next``), random ones
(:class:`Chaos`), dropping a connection, and :class:`InjectedFault`, the log entry of each.

A fault is one of these kinds:

- ``"500"``, ``"502"``, ``"503"``: that status with a Discord-style JSON error; nothing is applied.
- ``"429"``: a rate limit as Discord sends it (``Retry-After`` and ``retry_after``); nothing is applied.
- ``"drop_before"``: the connection is closed before the request is applied; nothing happens.
- ``"drop_after"``: the request is applied (message created, callback accepted, ...), then the
  connection is closed, so the client never sees the answer.

A queued fault with another status (``fail_next(status=413)``) is logged with that status as its kind.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .recording import RecordedRequest
from .routing import match_path, method_matches

log = logging.getLogger(__name__)

DROP_BEFORE = "drop_before"
DROP_AFTER = "drop_after"
RATE_LIMIT = "429"
HTTP_FAULTS: dict[str, int] = {"500": 500, "502": 502, "503": 503, RATE_LIMIT: 429}
FAULT_KINDS: tuple[str, ...] = (*HTTP_FAULTS, DROP_BEFORE, DROP_AFTER)

QUEUED = "queued"
CHAOS = "chaos"

Route = tuple[str, str]  # (method, template); placeholder names in the template do not matter

# What chaos hits by default: the calls that post, edit or delete messages and that answer
# interactions. Login, gateway, command sync and reads are left alone so the bot can start.
MESSAGE_WRITE_ROUTES: frozenset[Route] = frozenset(
    {
        ("POST", "/channels/{channel_id}/messages"),
        ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
        ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
        ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
        ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
        ("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
        ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"),
    }
)


@dataclass
class Fault:
    """A fault for the next ``remaining`` requests matching ``method`` and ``route``: an answer
    with ``status`` (and ``body``, else a Discord-style error), or, with ``drop``, a dropped
    connection (:data:`DROP_BEFORE` or :data:`DROP_AFTER`)."""

    method: str
    route: str
    status: int
    body: Any
    headers: dict[str, str]
    remaining: int
    drop: str | None = None
    retry_after: float | None = None  # for a 429 without ``body``

    @property
    def kind(self) -> str:
        return self.drop or str(self.status)


class FaultQueue:
    """Faults queued by ``fail_next`` and ``drop_next``, taken by the requests they match."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        """The first queued fault matching this request, counting it used."""
        for fault in self._faults:
            if method_matches(fault.method, method) and match_path(fault.route, path) is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    @property
    def pending(self) -> list[Fault]:
        return list(self._faults)

    def clear(self) -> None:
        self._faults.clear()


@dataclass(frozen=True)
class InjectedFault:
    """One fault the double injected: its kind, where it came from (``"chaos"`` or ``"queued"``),
    the request it hit and when (the double's clock)."""

    kind: str
    source: str
    method: str
    route: str | None
    path: str
    at: float
    request: RecordedRequest = field(repr=False, compare=False)


class Chaos:
    """Random faults: each eligible request fails with probability ``rate``, with a kind drawn
    by ``kinds`` weights. Decisions come from ``random.Random(seed)``, one or two draws per
    eligible request, so the same sequence of requests meets the same faults."""

    def __init__(
        self,
        rate: float,
        *,
        seed: int | None = 0,
        kinds: Mapping[str, float] | Iterable[str] | None = None,
        routes: Iterable[Route] = MESSAGE_WRITE_ROUTES,
        retry_after: tuple[float, float] = (0.05, 0.3),
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        weights = dict(kinds) if isinstance(kinds, Mapping) else dict.fromkeys(kinds or FAULT_KINDS, 1.0)
        unknown = set(weights) - set(FAULT_KINDS)
        if unknown or not weights or any(w <= 0 for w in weights.values()):
            raise ValueError(f"kinds must be positive weights of {FAULT_KINDS}, not {weights}")
        low, high = retry_after
        if not 0 <= low <= high:
            raise ValueError(f"retry_after must be a (low, high) range, not {retry_after}")
        self.rate = rate
        self.seed = seed
        self.weights = weights
        self.routes = frozenset((method.upper(), template) for method, template in routes)
        self.retry_after = (low, high)
        self._random = random.Random(seed)

    def eligible(self, method: str, path: str) -> bool:
        """Whether chaos may touch this request at all."""
        return any(
            method_matches(wanted, method) and match_path(template, path) is not None
            for wanted, template in self.routes
        )

    def pick(self, method: str, path: str) -> Fault | None:
        """The fault for this request, or ``None`` to let it through."""
        if not self.eligible(method, path) or self._random.random() >= self.rate:
            return None
        [kind] = self._random.choices(list(self.weights), weights=list(self.weights.values()))
        if kind in (DROP_BEFORE, DROP_AFTER):
            return Fault(method, path, 0, None, {}, 1, drop=kind)
        retry_after = round(self._random.uniform(*self.retry_after), 3) if kind == RATE_LIMIT else None
        return Fault(method, path, HTTP_FAULTS[kind], None, {}, 1, retry_after=retry_after)


def rate_limit_headers(retry_after: float) -> dict[str, str]:
    """The headers of a per-route 429 as Discord sends them. ``Via`` matters: discord.py only
    retries a 429 that has it (one without comes from Cloudflare). ``Retry-After`` is whole
    seconds, rounded up, as in Discord's documented example; discord.py waits ``retry_after``
    from the body instead."""
    return {"Via": "1.1 google", "Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Scope": "user"}


def drop_connection(transport: asyncio.BaseTransport | None) -> None:
    """End a TCP connection at once, with no HTTP answer or websocket close frame, as a
    network failure would: the peer reads end-of-stream (aiohttp: ``ServerDisconnectedError``)."""
    if transport is not None and not transport.is_closing():
        transport.abort()
