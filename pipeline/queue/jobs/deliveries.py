"""Where results go in Discord and whether they got there (the bot's delivery reads and writes these).

A delivery stays ``pending`` until the result is posted; a failed post is retried at its
``retry_at``, and a delivery given up on is ``failed``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pipeline.queue.jobs.snapshots import DeliverySnapshot
from pipeline.queue.jobs.store import JobStore
from storage import (
    begin_posting,
    get_delivery_for_job,
    mark_delivered,
    pending_deliveries,
    record_delivery_failure,
    record_progress_message,
)

log = logging.getLogger(__name__)


class Deliveries:
    """The delivery of each job that came from Discord."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def get(self, job_id: int) -> DeliverySnapshot | None:
        """The job's delivery; ``None`` for a job without one (the command line's, or deleted)."""
        with self._store.session() as session:
            delivery = get_delivery_for_job(session, job_id=job_id)
            return DeliverySnapshot.of(delivery) if delivery is not None else None

    def record_progress_message(self, job_id: int, *, message_id: int) -> None:
        """Remember the message that shows the job queued or in progress."""
        with self._store.session() as session:
            record_progress_message(session, job_id=job_id, message_id=message_id)

    def begin_posting(self, job_id: int, *, now: datetime) -> None:
        """An attempt to post the result starts: written before it goes out, so that after a crash
        the bot knows to look for it in Discord before posting again."""
        with self._store.session() as session:
            begin_posting(session, job_id=job_id, now=now)

    def mark_delivered(self, job_id: int, *, message_id: int) -> None:
        """The result was posted as ``message_id``."""
        with self._store.session() as session:
            mark_delivered(session, job_id=job_id, message_id=message_id)

    def record_failure(self, job_id: int, *, error: str, retry_at: datetime | None) -> None:
        """A post failed: try again at ``retry_at``, or give up (``failed``) when it is ``None``."""
        with self._store.session() as session:
            record_delivery_failure(session, job_id=job_id, error=error, retry_at=retry_at)

    def due(self, *, now: datetime) -> list[int]:
        """The jobs whose delivery is pending and due and which have finished, oldest first."""
        with self._store.session() as session:
            return [delivery.job_id for delivery in pending_deliveries(session, now=now)]
