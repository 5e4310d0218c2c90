"""The job interface on an event loop (the bot's, the HTTP API's), written once: each call runs
in a thread.

``await jobs.get(7)`` is ``JobService.get(7)`` run with :func:`asyncio.to_thread`, so the
database and the image files never block the loop; the sections (``jobs.images``,
``jobs.deliveries``, ``jobs.community``, ``jobs.moderation``, ``jobs.keys``) work the same way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.queue.jobs.service import JobService

log = logging.getLogger(__name__)


class Async:
    """The public methods of ``target`` as coroutine functions."""

    def __init__(self, target: object) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._target, name)
        if not callable(method):
            raise AttributeError(f"{type(self._target).__name__}.{name} is not a method")

        @functools.wraps(method)
        async def in_thread(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return in_thread


class AsyncJobs(Async):
    """:class:`~pipeline.queue.jobs.JobService` and its sections, for the event loop."""

    def __init__(self, jobs: JobService) -> None:
        super().__init__(jobs)
        self.images = Async(jobs.images)
        self.deliveries = Async(jobs.deliveries)
        self.community = Async(jobs.community)
        self.moderation = Async(jobs.moderation)
        self.keys = Async(jobs.keys)
