"""The queue as people see it: what runs now, what waits in which order, and when it should be done.

The estimate comes from the measured recent throughput: seconds per image over the GPU's busy
time of the last finished jobs (overlapping runs of one batch count once), times the images
that will run before a job and the job's own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pipeline.queue.worker_status import WorkerStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueEntry:
    """One unfinished job."""

    job_id: int
    status: str
    """``running`` or ``queued``."""
    position: int | None
    """1-based place among the queued jobs; ``None`` while it runs."""
    owner_discord_id: int | None
    owner_name: str
    guild_id: int | None
    images: int
    prompt: str
    paused: bool = False
    """Its guild's queue is paused: it waits until an admin resumes it."""
    eta_s: float | None = None
    """Seconds until it should be done, when there is a measured throughput and it is not paused."""
    owner_id: int | None = None
    """The owner's user id (an API key's jobs are found by it)."""


@dataclass(frozen=True)
class QueueOverview:
    entries: tuple[QueueEntry, ...]
    """Running jobs first, then the queued ones in the order they will run."""
    seconds_per_image: float | None
    """The measured recent throughput; ``None`` before any job finished."""
    workers: tuple[WorkerStatus, ...] = ()
    """The remote GPU workers that announced themselves lately (none with the embedded worker)."""
    remote: bool = False
    """Whether batches run on remote GPU workers (NANKE_BROKER_URL) rather than in this process."""


def seconds_per_image(runs: Sequence[tuple[datetime, datetime, int]]) -> float | None:
    """Busy seconds per image over ``runs`` ((started, finished, images) of finished jobs)."""
    images = sum(count for _, _, count in runs)
    if not images:
        return None
    busy = 0.0
    end: datetime | None = None
    for started, finished, _ in sorted(runs):
        if end is not None and started < end:
            if finished > end:
                busy += (finished - end).total_seconds()
                end = finished
            continue
        busy += (finished - started).total_seconds()
        end = finished
    return busy / images


def with_estimates(entries: Sequence[QueueEntry], per_image: float | None) -> tuple[QueueEntry, ...]:
    """``entries`` (running first, then queued in order) with the time each should be done."""
    if per_image is None:
        return tuple(entries)
    ahead = 0
    estimated = []
    for entry in entries:
        if entry.paused:
            estimated.append(entry)
            continue
        ahead += entry.images
        estimated.append(replace(entry, eta_s=ahead * per_image))
    return tuple(estimated)
