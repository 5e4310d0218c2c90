"""The doorbell between the job interface and the worker."""

from __future__ import annotations

import threading


class Doorbell(threading.Event):
    """Rung when a job is queued, so the worker looks at the queue at once instead of at its next poll."""

    def ring(self, _job_id: int | None = None) -> None:
        self.set()
