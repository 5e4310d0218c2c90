"""Deliveries: where a job's result goes in Discord, and whether it got there.

A delivery stays ``pending`` until the result is posted; a failed post is retried at
``next_attempt_at``, and a delivery given up on is ``failed``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.errors import DeliveryNotFound
from storage.models import FINISHED_STATUSES, Delivery, Job
from storage.timestamps import utcnow

log = logging.getLogger(__name__)


def create_delivery(
    session: Session,
    *,
    job_id: int,
    channel_id: int,
    guild_id: int | None = None,
    application_id: int | None = None,
    interaction_token: str | None = None,
    token_expires_at: datetime | None = None,
    upload_limit: int | None = None,
    age_restricted: bool = False,
) -> Delivery:
    """Record where the result of ``job_id`` goes (one delivery per job)."""
    delivery = Delivery(
        job_id=job_id,
        channel_id=channel_id,
        guild_id=guild_id,
        application_id=application_id,
        interaction_token=interaction_token,
        token_expires_at=token_expires_at,
        upload_limit=upload_limit,
        age_restricted=age_restricted,
        status="pending",
        attempts=0,
        created_at=utcnow(),
    )
    session.add(delivery)
    session.flush()
    return delivery


def get_delivery_for_job(session: Session, *, job_id: int) -> Delivery | None:
    return session.scalars(select(Delivery).where(Delivery.job_id == job_id)).first()


def record_progress_message(session: Session, *, job_id: int, message_id: int) -> Delivery:
    """Remember the message that shows the job queued or in progress."""
    delivery = _required(session, job_id)
    delivery.progress_message_id = message_id
    return delivery


def begin_posting(session: Session, *, job_id: int, now: datetime) -> Delivery:
    """An attempt to post the result starts now (recorded before it goes out; the first one counts)."""
    delivery = _required(session, job_id)
    if delivery.posting_since is None:
        delivery.posting_since = now
    return delivery


def mark_delivered(session: Session, *, job_id: int, message_id: int) -> Delivery:
    """The result was posted as ``message_id``."""
    delivery = _required(session, job_id)
    delivery.status = "delivered"
    delivery.result_message_id = message_id
    delivery.delivered_at = utcnow()
    delivery.next_attempt_at = None
    delivery.posting_since = None
    return delivery


def record_delivery_failure(
    session: Session, *, job_id: int, error: str, retry_at: datetime | None
) -> Delivery:
    """A post failed: try again at ``retry_at``, or give up (``failed``) when it is ``None``."""
    delivery = _required(session, job_id)
    delivery.attempts += 1
    delivery.last_error = error
    delivery.next_attempt_at = retry_at
    if retry_at is None:
        delivery.status = "failed"
        log.warning("delivery of job %d given up after %d attempts", job_id, delivery.attempts)
    return delivery


def pending_deliveries(session: Session, *, now: datetime, limit: int | None = None) -> list[Delivery]:
    """Deliveries still pending and due whose job has finished (done, failed or cancelled), oldest first."""
    query = (
        select(Delivery)
        .join(Delivery.job)
        .where(
            Delivery.status == "pending",
            Job.status.in_(FINISHED_STATUSES),
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Job.finished_at, Delivery.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def _required(session: Session, job_id: int) -> Delivery:
    delivery = get_delivery_for_job(session, job_id=job_id)
    if delivery is None:
        raise DeliveryNotFound(job_id)
    return delivery
