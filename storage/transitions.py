"""The job life cycle, in one table: which status may follow which."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from storage.errors import InvalidTransition
from storage.models import Job
from storage.timestamps import utcnow

log = logging.getLogger(__name__)

TRANSITIONS: Mapping[str, frozenset[str]] = {
    # A queued job may fail before it starts (its model is missing, say).
    "queued": frozenset({"running", "cancelled", "failed"}),
    # Back to queued only when a crash interrupted it.
    "running": frozenset({"done", "failed", "cancelled", "queued"}),
    "done": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


def can_move(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


def move(job: Job, to_status: str) -> None:
    """Set ``job.status`` and the timestamps that go with it, or raise :class:`InvalidTransition`."""
    if not can_move(job.status, to_status):
        raise InvalidTransition(job.id, job.status, to_status)
    now = utcnow()
    if to_status == "running":
        job.started_at = now
        job.attempts += 1
    elif to_status == "queued":
        job.started_at = None
    else:
        job.finished_at = now
    log.debug("job %d: %s -> %s", job.id, job.status, to_status)
    job.status = to_status
