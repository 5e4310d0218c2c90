"""What the double records (requests, uploads) and how tests wait for it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .routing import match_path, method_matches

T = TypeVar("T")

_FILE_FIELD = re.compile(r"files\[(\d+)\]")


@dataclass
class UploadedFile:
    """One file part of a multipart request (``files[n]``)."""

    field: str
    filename: str
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def index(self) -> int | None:
        """``n`` of a ``files[n]`` field: what ``attachments[].id`` refers to."""
        found = _FILE_FIELD.fullmatch(self.field)
        return int(found.group(1)) if found else None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """One REST call as the double saw it, with the answer it gave."""

    method: str
    path: str  # below the API base, e.g. /channels/1/messages
    route: str | None  # the template it matched, e.g. /channels/{channel_id}/messages; None if unknown
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False)
    json: Any
    files: list[UploadedFile]
    at: float
    status: int | None = None  # what the double answered (or would have, had the connection held)
    response: Any = field(default=None, repr=False)
    fault: str | None = None  # the kind of fault injected into this call, if any (see .faults)
    delivered: bool | None = None  # the answer reached the client's socket; False: dropped or gone

    def matches(self, method: str | None = None, route: str | None = None) -> bool:
        if method is not None and not method_matches(method, self.method):
            return False
        return route is None or match_path(route, self.path) is not None


class Notifier:
    """Wakes waiters whenever the double's state changes; no polling, no sleeps."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[], T], timeout: float, description: str = "") -> T:
        """Return the first truthy value of ``predicate()``, re-checked after every change."""

        async def until_true() -> T:
            while True:
                changed = self._changed
                result = predicate()
                if result:
                    return result
                await changed.wait()

        try:
            return await asyncio.wait_for(until_true(), timeout)
        except asyncio.TimeoutError:
            what = description or getattr(predicate, "__name__", repr(predicate))
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from None
