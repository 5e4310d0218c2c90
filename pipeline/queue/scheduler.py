"""The queue policy: which queued jobs run next, and which of them share one GPU batch.

Fairness is round-robin across owners: everyone's oldest job comes before anyone's second job,
and among owners the one served longest ago goes first, so one member queueing ten jobs does not
starve the channel. A higher ``priority`` goes before fairness. The first job in that order is the
batch's head; later jobs join it when they can share one diffusers call (equal
:meth:`~pipeline.domain.request.GenerationRequest.batch_key`) and the batch stays within ``max_images``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.request import GenerationRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuedJob:
    """What the scheduler needs to know of one queued job."""

    job_id: int
    owner_id: int
    request: GenerationRequest
    created_at: datetime
    priority: int = 0
    guild_id: int | None = None


class FairScheduler:
    """Orders queued jobs fairly and groups compatible ones; remembers whom it served when.

    Thread-safe: the worker thread calls :meth:`next_batch` and :meth:`served` while the bot asks
    for queue positions.
    """

    def __init__(self, *, max_images: int = 4) -> None:
        if max_images < 1:
            raise ValueError(f"max_images: {max_images} (allowed: 1 or more)")
        self.max_images = max_images
        self._last_served: dict[int, float] = {}
        self._lock = threading.Lock()

    def order(self, queued: Iterable[QueuedJob]) -> list[QueuedJob]:
        """All ``queued`` jobs in the order they would run if nothing else arrived."""
        with self._lock:
            last_served = dict(self._last_served)
        ordered: list[QueuedJob] = []
        by_priority: dict[int, list[QueuedJob]] = defaultdict(list)
        for job in queued:
            by_priority[job.priority].append(job)
        for priority in sorted(by_priority, reverse=True):
            ordered.extend(_round_robin(by_priority[priority], last_served))
        return ordered

    def next_batch(self, queued: Iterable[QueuedJob], *, max_pixels: int | None = None) -> list[QueuedJob]:
        """The jobs to run next: the head of the fair order and the compatible jobs that fit.

        A batch holds at most ``max_images`` images and, with ``max_pixels``, at most that many
        pixels in all (what the GPU's memory allows); the head always runs, even when it alone is
        over (the engine splits a batch that does not fit).
        """
        ordered = self.order(queued)
        if not ordered:
            return []
        head = ordered[0]
        key = head.request.batch_key()
        batch = [head]
        images = head.request.count
        pixels = _pixels(head)
        for job in ordered[1:]:
            if job.request.batch_key() != key or images + job.request.count > self.max_images:
                continue
            if max_pixels is not None and pixels + _pixels(job) > max_pixels:
                continue
            batch.append(job)
            images += job.request.count
            pixels += _pixels(job)
        return batch

    def served(self, jobs: Sequence[QueuedJob]) -> None:
        """Record that ``jobs`` were started now (their owners move to the back of the line)."""
        now = time.monotonic()
        with self._lock:
            for offset, job in enumerate(jobs):
                self._last_served[job.owner_id] = now + offset * 1e-6

    def position(self, job_id: int, queued: Iterable[QueuedJob]) -> int | None:
        """1-based place of ``job_id`` in the fair order, or ``None`` when it is not queued."""
        for place, job in enumerate(self.order(queued), start=1):
            if job.job_id == job_id:
                return place
        return None


def _pixels(job: QueuedJob) -> int:
    return job.request.count * job.request.width * job.request.height


def _round_robin(jobs: Sequence[QueuedJob], last_served: dict[int, float]) -> list[QueuedJob]:
    per_owner: dict[int, list[QueuedJob]] = defaultdict(list)
    for job in sorted(jobs, key=lambda j: (j.created_at, j.job_id)):
        per_owner[job.owner_id].append(job)
    owners = sorted(
        per_owner,
        key=lambda owner: (last_served.get(owner, float("-inf")), per_owner[owner][0].created_at),
    )
    ordered: list[QueuedJob] = []
    depth = max(len(queue) for queue in per_owner.values())
    for turn in range(depth):
        ordered.extend(per_owner[owner][turn] for owner in owners if turn < len(per_owner[owner]))
    return ordered
