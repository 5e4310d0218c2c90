"""The job interface: the one door to storage.

Everything that changes a job or reads or writes an image file goes through a
:class:`JobService`; it takes plain values and returns frozen snapshots, never ORM rows, and
is the only part of ``pipeline`` that imports ``storage``. The worker, the command line and the
bot's front door all use it; none opens a session of its own (:class:`JobStore` is the one
place sessions open).
"""

from __future__ import annotations

from pipeline.queue.jobs.images import Upload
from pipeline.queue.jobs.keys import ApiKeySnapshot
from pipeline.queue.jobs.moderation import AUDIT_ACTIONS, MAX_DAILY_LIMIT, AuditEntry
from pipeline.queue.jobs.overview import QueueEntry, QueueOverview
from pipeline.queue.jobs.runs import ImageFile
from pipeline.queue.jobs.service import JobService
from pipeline.queue.jobs.snapshots import (
    FINISHED_STATUSES,
    JOB_KINDS,
    DeliverySnapshot,
    Destination,
    ImageSnapshot,
    JobSnapshot,
    ListedJob,
    MemberSettings,
    Requester,
    Viewer,
)
from pipeline.queue.jobs.store import JobStore

__all__ = [
    "AUDIT_ACTIONS",
    "FINISHED_STATUSES",
    "JOB_KINDS",
    "MAX_DAILY_LIMIT",
    "ApiKeySnapshot",
    "AuditEntry",
    "DeliverySnapshot",
    "Destination",
    "ImageFile",
    "ImageSnapshot",
    "JobService",
    "JobSnapshot",
    "JobStore",
    "ListedJob",
    "MemberSettings",
    "QueueEntry",
    "QueueOverview",
    "Requester",
    "Upload",
    "Viewer",
]
