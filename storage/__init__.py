"""Storage: the database (jobs, images, users, deliveries) and the content-addressed image store.

Knows nothing about Discord or torch. Data access is small keyword-only functions that take a
``Session`` first; open one with ``Database.session()``.
"""

from __future__ import annotations

import logging

from storage.base import Base
from storage.community import (
    PERIODS,
    ListedJob,
    Period,
    claim_showcase_post,
    get_showcase_post,
    is_visible,
    jobs_by_member,
    like_count,
    member_history,
    private_by_default,
    recent_jobs,
    record_showcase_post,
    release_showcase_post,
    remix_count,
    search_jobs,
    set_private_by_default,
    set_showcase_channel,
    showcase_channel,
    toggle_like,
    top_jobs,
)
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
    GuildSettings,
    Image,
    Job,
    Like,
    ShowcasePost,
    User,
    UserSettings,
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
    "PERIODS",
    "TRANSITIONS",
    "UNFINISHED_STATUSES",
    "Base",
    "Database",
    "DatabaseNotMigrated",
    "Delivery",
    "DeliveryNotFound",
    "GuildSettings",
    "Image",
    "ImageStore",
    "InvalidTransition",
    "Job",
    "JobNotFound",
    "Like",
    "ListedJob",
    "NewImage",
    "Period",
    "ShowcasePost",
    "StorageError",
    "StoredFile",
    "UTCDateTime",
    "User",
    "UserSettings",
    "can_move",
    "cancel_job",
    "children_of",
    "claim_showcase_post",
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
    "get_showcase_post",
    "head_revision",
    "is_cancel_requested",
    "is_visible",
    "jobs_by_member",
    "like_count",
    "mark_cancelled",
    "mark_delivered",
    "member_history",
    "pending_deliveries",
    "private_by_default",
    "queued_jobs",
    "recent_jobs",
    "record_delivery_failure",
    "record_progress_message",
    "record_showcase_post",
    "release_showcase_post",
    "remix_count",
    "requeue_interrupted_jobs",
    "search_jobs",
    "set_private_by_default",
    "set_showcase_channel",
    "showcase_channel",
    "start_job",
    "toggle_like",
    "top_jobs",
    "upgrade_to_head",
    "utcnow",
]
