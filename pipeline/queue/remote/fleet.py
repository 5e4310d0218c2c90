"""Who the GPU workers are: each announces itself in Redis every few seconds, the bot reads them.

A worker's announcement (:class:`~pipeline.queue.worker_status.WorkerStatus`) says which
models it holds and can load, its free GPU memory, whether it is busy and with which batch,
the batches it finished lately and its speed. It expires on its own (``ttl_s``), so a worker
that dies or stops answering disappears.
The same Redis carries cancellation requests from the bot to the worker running a batch.
"""

from __future__ import annotations

import logging

import redis

from pipeline.queue.worker_status import WorkerStatus

log = logging.getLogger(__name__)

WORKER_KEY = "nanke:worker:"
CANCEL_KEY = "nanke:cancel:"
CANCEL_TTL_S = 24 * 3600


class Fleet:
    """The workers' announcements and the cancellation requests, in the Redis at ``redis_url``."""

    def __init__(self, redis_url: str, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15
        )

    def announce(self, status: WorkerStatus) -> None:
        """Say that ``status`` is current; it expires after ``ttl_s`` unless said again."""
        self.client.set(WORKER_KEY + status.name, status.to_json(), px=max(1, int(self.ttl_s * 1000)))

    def withdraw(self, name: str, instance: str) -> None:
        """Take the announcement of ``name`` back (a worker stopping), if it is still this instance's."""
        current = self.get(name)
        if current is not None and current.instance == instance:
            self.client.delete(WORKER_KEY + name)

    def get(self, name: str) -> WorkerStatus | None:
        raw = self.client.get(WORKER_KEY + name)
        return WorkerStatus.from_json(raw) if raw else None

    def workers(self) -> list[WorkerStatus]:
        """Every worker that announced itself within ``ttl_s``, by name."""
        keys = sorted(self.client.scan_iter(match=WORKER_KEY + "*", count=100))
        if not keys:
            return []
        found: list[WorkerStatus] = []
        for raw in self.client.mget(keys):
            if not raw:
                continue
            try:
                found.append(WorkerStatus.from_json(raw))
            except (ValueError, TypeError):
                log.warning("an unreadable worker announcement in Redis was skipped")
        return found

    def request_cancel(self, dispatch_id: str) -> None:
        """Ask the worker running ``dispatch_id`` to stop it."""
        self.client.set(CANCEL_KEY + dispatch_id, "1", ex=CANCEL_TTL_S)

    def cancel_requested(self, dispatch_id: str) -> bool:
        return bool(self.client.exists(CANCEL_KEY + dispatch_id))

    def close(self) -> None:
        self.client.close()
