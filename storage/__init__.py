"""Storage: the database (jobs, images, users, deliveries) and the content-addressed image store.

Knows nothing about Discord or torch. Data access is small keyword-only functions that take a
``Session`` first; open one with ``Database.session()``.
"""

from __future__ import annotations

import logging

from storage.base import Base
from storage.db import Database
from storage.deliveries import (
    create_delivery,
    get_delivery_for_job,
    mark_delivered,
    pending_deliveries,
    record_delivery_failure,
    record_progress_message,
)
from storage.errors import DatabaseNotMigrated, DeliveryNotFound, InvalidTransition, JobNotFound, StorageError
from storage.files import ImageStore, StoredFile
from storage.jobs import (
    NewImage,
    cancel_job,
    children_of,
    count_unfinished_jobs,
    create_job,
    delete_job,
    fail_job,
    find_image_path,
    finish_job,
    get_job,
    is_cancel_requested,
    mark_cancelled,
    queued_jobs,
    requeue_interrupted_jobs,
    start_job,
)
from storage.migrate import current_revision, downgrade_to, head_revision, upgrade_to_head
from storage.models import (
    DELIVERY_STATUSES,
    FINISHED_STATUSES,
    JOB_KINDS,
    JOB_STATUSES,
    UNFINISHED_STATUSES,
    Delivery,
    Image,
    Job,
    User,
)
from storage.timestamps import UTCDateTime, utcnow
from storage.transitions import TRANSITIONS, can_move
from storage.users import get_or_create_user

log = logging.getLogger(__name__)

__all__ = [
    "DELIVERY_STATUSES",
    "FINISHED_STATUSES",
    "JOB_KINDS",
    "JOB_STATUSES",
    "TRANSITIONS",
    "UNFINISHED_STATUSES",
    "Base",
    "Database",
    "DatabaseNotMigrated",
    "Delivery",
    "DeliveryNotFound",
    "Image",
    "ImageStore",
    "InvalidTransition",
    "Job",
    "JobNotFound",
    "NewImage",
    "StorageError",
    "StoredFile",
    "UTCDateTime",
    "User",
    "can_move",
    "cancel_job",
    "children_of",
    "count_unfinished_jobs",
    "create_delivery",
    "create_job",
    "current_revision",
    "delete_job",
    "downgrade_to",
    "fail_job",
    "find_image_path",
    "finish_job",
    "get_delivery_for_job",
    "get_job",
    "get_or_create_user",
    "head_revision",
    "is_cancel_requested",
    "mark_cancelled",
    "mark_delivered",
    "pending_deliveries",
    "queued_jobs",
    "record_delivery_failure",
    "record_progress_message",
    "requeue_interrupted_jobs",
    "start_job",
    "upgrade_to_head",
    "utcnow",
]
